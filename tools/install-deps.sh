#!/usr/bin/env bash
# Installs, from Debian's archive, every package the build, the tests and the
# demo need, and fetches the Debian source packages the emulated targets
# build their crypto from (mbedTLS, libsodium) into build/deps/src (never
# committed: build/ is ignored). Idempotent: packages already present are not
# touched and sources already unpacked are not fetched again, so a second
# run costs one dpkg query and prints one line.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  build-essential cmake pkg-config dpkg-dev
  libmbedtls-dev libssl-dev libsodium-dev
  valgrind clang libclang-rt-14-dev clang-format
  gcc-arm-none-eabi libnewlib-arm-none-eabi gcc-riscv64-unknown-elf libnewlib-dev
  # Emulated targets (targets/): QEMU for Cortex-M4 (mps2-an386), rv32
  # (virt) and Xtensa lx106 (sim), and picolibc for each cross compiler.
  # Debian has no ESP32 LX6/LX7 toolchain or machine: lx106 is the ESP8266's.
  qemu-system-arm qemu-system-misc
  picolibc-arm-none-eabi picolibc-riscv64-unknown-elf
  gcc-xtensa-lx106 binutils-xtensa-lx106 picolibc-xtensa-lx106-elf
  python3-kconfiglib python3-yaml git
  # bench/loopback.py (make bench): openssl s_server and its throwaway certificate.
  openssl
  python3 python3-cryptography python3-pytest python3-mypy python3-hypothesis python3-serial
  python3-setuptools python3-venv python3-pip
  # The device registry: SQLite comes with Python; PostgreSQL (the server,
  # whose initdb/pg_ctl the tests run in a temporary directory) and its
  # Python driver.
  postgresql python3-psycopg
  # The gateway (usmp gateway): its MQTT client and metrics, and the broker
  # and command-line clients its tests and the README's quick start run.
  python3-paho-mqtt python3-prometheus-client mosquitto mosquitto-clients
  # The Wireshark dissector's tests (tests/wireshark): tshark decodes,
  # dumpcap (wireshark-common) captures the live sessions on lo.
  tshark
  # Discovery and the monitor: mDNS advertising and `usmp scan`
  # (python3-zeroconf), `usmp monitor` (python3-rich); usmp_device resolves
  # through avahi-daemon (libavahi-client-dev, the daemon and its D-Bus and
  # avahi-browse for the tests); the tests build a LAN of network namespaces
  # (iproute2) and drive the monitor in tmux.
  python3-zeroconf python3-rich libavahi-client-dev avahi-daemon avahi-utils dbus iproute2 tmux
)
# Debian source packages the emulated targets compile for the device,
# unpacked under build/deps/src/<package>-<version>.
source_packages=(mbedtls libsodium)
SRC_DIR="$ROOT/build/deps/src"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
missing_sources=()
for s in "${source_packages[@]}"; do
  if ! compgen -G "$SRC_DIR/$s-[0-9]*/" >/dev/null; then
    missing_sources+=("$s")
  fi
done

if [ ${#missing[@]} -eq 0 ] && [ ${#missing_sources[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages and ${#source_packages[@]} source packages present"
  exit 0
fi

# Source packages need deb-src entries. They are derived from the machine's
# own Debian entries (the same mirrors, suites and keys), never named here:
# a deb822 file gets a copy of each stanza with `Types: deb-src`, a
# one-line-style file a `deb-src` copy of each `deb` line.
enable_deb_src() {
  local d=/etc/apt/sources.list.d
  if grep -qsE '^(Types:.*\bdeb-src\b|deb-src[[:space:]])' /etc/apt/sources.list "$d"/*.list "$d"/*.sources; then
    return 1
  fi
  local f out
  for f in "$d"/*.sources; do
    [ -f "$f" ] || continue
    out="$d/$(basename "$f" .sources)-src.sources"
    awk 'BEGIN { RS = ""; ORS = "\n\n" }
         {
           n = split($0, line, "\n"); binary = 0; enabled = 1
           for (i = 1; i <= n; i++) {
             if (line[i] ~ /^Types:/ && (" " substr(line[i], 7) " ") ~ /[ \t]deb[ \t]/) binary = 1
             if (line[i] ~ /^Enabled:[ \t]*no/) enabled = 0
           }
           if (!binary || !enabled) next
           out = ""
           for (i = 1; i <= n; i++) {
             if (line[i] ~ /^Types:/) line[i] = "Types: deb-src"
             out = out (i > 1 ? "\n" : "") line[i]
           }
           print out
         }' "$f" | $SUDO tee "$out" >/dev/null
    [ -s "$out" ] || $SUDO rm -f "$out"
  done
  for f in /etc/apt/sources.list "$d"/*.list; do
    [ -f "$f" ] || continue
    out="$d/$(basename "$f" .list)-src.list"
    sed -n 's/^deb[[:space:]]\+/deb-src /p' "$f" | $SUDO tee "$out" >/dev/null
    [ -s "$out" ] || $SUDO rm -f "$out"
  done
  return 0
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
fi
if [ ${#missing_sources[@]} -gt 0 ]; then
  echo "deps: fetching source packages ${missing_sources[*]} into build/deps/src"
  if enable_deb_src; then echo "deps: enabled deb-src entries derived from the Debian entries"; fi
fi
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  # wireshark-common asks whether non-root users may capture (a setuid
  # dumpcap); answer no beforehand: the tests capture as root.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#missing_sources[@]} -gt 0 ]; then
  mkdir -p "$SRC_DIR"
  # apt-get source unpacks (dpkg-source -x, Debian's patches applied) into
  # the current directory; -qq keeps it quiet.
  (cd "$SRC_DIR" && apt-get source -qq "${missing_sources[@]}" >/dev/null 2>"$SRC_DIR/apt-get-source.log") || {
    cat "$SRC_DIR/apt-get-source.log" >&2
    echo "deps: apt-get source ${missing_sources[*]} failed" >&2
    exit 1
  }
  rm -f "$SRC_DIR"/*.dsc "$SRC_DIR"/*.tar.* "$SRC_DIR/apt-get-source.log"
fi
echo "deps: done"
