#!/usr/bin/env bash
# Cross-compiles the portable C for the two 32-bit microcontroller families
# USMP targets, with warnings as errors, so that 32-bit and alignment bugs
# fail the build:
#   rv32imc   (ESP32-C3)   riscv64-unknown-elf-gcc -march=rv32imc -mabi=ilp32
#   Cortex-M4 (Thumb-2)    arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb
# Compiled: the core (cmake/usmp_sources.cmake), the crypto seam (crypto/common) and the mbedTLS
# backend against the host's mbedTLS headers (Debian's 2.28; ESP-IDF ships
# 3.x, whose headers are not here), the shared example application
# (examples/common), and the ESP32 port against the ESP-IDF stand-in headers
# of tests/esp32/stand-ins (compile only), with the UART transport's framing
# (transports/usmp_uart.c) and its ESP-IDF line (usmp_uart_esp32.c, against
# the stand-in driver/uart.h). Not compiled: transports/usmp_tcp.c and
# usmp_udp.c, which need a socket API (lwIP) that neither toolchain has.
#
# Each target is built in four feature profiles (include/usmp/usmp_options.h),
# since USMP_SERVER, USMP_DATAGRAM, USMP_ERROR_TEXT and USMP_OTA compile code
# and struct fields in and out:
#   full      the defaults: every feature on but OTA
#   device    -DUSMP_SERVER=0 -DUSMP_DATAGRAM=0: what ports/esp32 builds by
#             default (client role, stream transport, error sentences)
#   smallest  -DUSMP_SERVER=0 -DUSMP_DATAGRAM=0 -DUSMP_ERROR_TEXT=0
#   ota       the device with -DUSMP_OTA=1 (CONFIG_USMP_OTA): also the OTA
#             module (ota/), its ESP32 flash hooks (usmp_ota_esp32.c, against
#             the stand-in esp_ota_ops.h, esp_partition.h and nvs.h) and the
#             Ed25519 glue for libsodium (crypto/ed25519), against the
#             headers of Debian's libsodium source package in build/deps/src
#             (tools/install-deps.sh)
#
# Compile only (-c): nothing is linked or run on these targets here.
# riscv64-unknown-elf has no C library in Debian; the target-independent
# newlib headers of Debian's libnewlib-dev (/usr/include/newlib) serve
# (ESP-IDF uses newlib too). arm-none-eabi has its own newlib.
#
#   usage: tests/esp32/cross_build.sh [BUILD_DIR]      (default build/esp32-cross)
# Objects go to BUILD_DIR/<profile>/<target>. Ends with "cross: N files
# compiled for M targets x P profiles (...), K failed"; exit 1 on any failure.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/build/esp32-cross}
STANDINS=$ROOT/tests/esp32/stand-ins/components
mkdir -p "$OUT"

# mbedtls/ and psa/ alone, so that the host's other headers in /usr/include
# (glibc's) never reach a cross compiler.
MBEDINC=$OUT/mbedtls-include
mkdir -p "$MBEDINC"
for d in mbedtls psa; do
  if [ -d "/usr/include/$d" ]; then ln -sfn "/usr/include/$d" "$MBEDINC/$d"; fi
done

WARN=(-std=c99 -Os -Wall -Wextra -Werror -Wcast-align=strict -Wshadow -Wstrict-prototypes
      -Wmissing-prototypes -Wpointer-arith -Wcast-qual -Wformat=2 -Wundef -Wvla
      -ffunction-sections -fdata-sections)
INC=(-I"$ROOT/include/usmp" -I"$ROOT/src" -I"$ROOT/crypto/common")

# The core: every list of cmake/usmp_sources.cmake (one path per line
# between "set(USMP_..._SOURCES" and ")", relative to the root).
mapfile -t core < <(awk '/^set\(USMP_[A-Z_]+_SOURCES$/ {inside = 1; next}
                         inside && /^\)$/ {inside = 0}
                         inside {print $1}' "$ROOT/cmake/usmp_sources.cmake")
if [ "${#core[@]}" -eq 0 ]; then
  echo "cross: no sources read from cmake/usmp_sources.cmake"
  exit 1
fi
portable=("${core[@]/#/$ROOT/}" "$ROOT/crypto/common/usmp_crypto_common.c" "$ROOT/examples/common/echo_app.c")
backend="$ROOT/crypto/mbedtls/usmp_crypto_mbedtls.c"
port="$ROOT/ports/esp32/usmp/usmp_port_esp32.c"
uart=("$ROOT/transports/usmp_uart.c" "$ROOT/ports/esp32/usmp/usmp_uart_esp32.c")
port_inc=(-I"$ROOT/transports")
for c in esp_common esp_hw_support esp_timer freertos log esp_event esp_netif esp_wifi bootloader_support driver; do
  port_inc+=(-I"$STANDINS/$c/include")
done

# The OTA profile's extra files and headers.
ota_port="$ROOT/ports/esp32/usmp/usmp_ota_esp32.c"
ota_inc=(-I"$ROOT/ports/esp32/usmp")
for c in esp_common app_update esp_partition nvs_flash; do
  ota_inc+=(-I"$STANDINS/$c/include")
done
sodium_src=$(ls -d "$ROOT"/build/deps/src/libsodium-[0-9]* 2>/dev/null | sort | tail -n 1)

# The feature profiles: name and -D flags.
profile_names=(full device smallest ota)
declare -A profile_flags=(
  [full]=""
  [device]="-DUSMP_SERVER=0 -DUSMP_DATAGRAM=0"
  [smallest]="-DUSMP_SERVER=0 -DUSMP_DATAGRAM=0 -DUSMP_ERROR_TEXT=0"
  [ota]="-DUSMP_SERVER=0 -DUSMP_DATAGRAM=0 -DUSMP_OTA=1"
)

targets=0 files=0 failed=0
compile() { # dir, compiler and flags..., -- file extra flags...
  local dir=$1; shift
  local cc=() extra=() f obj
  while [ "$1" != "--" ]; do cc+=("$1"); shift; done; shift
  f=$1; shift; extra=("$@")
  obj="$OUT/$dir/$(basename "${f%.c}").o"
  mkdir -p "$OUT/$dir"
  files=$((files + 1))
  if ! "${cc[@]}" "${WARN[@]}" "${INC[@]}" "${extra[@]}" -c "$f" -o "$obj"; then
    echo "cross [$dir]: FAILED: ${f#"$ROOT"/}"
    failed=$((failed + 1))
  fi
}

build_target() { # name, compiler and flags...
  local name=$1; shift
  local cc=("$@") f profile defs
  if ! command -v "${cc[0]}" >/dev/null; then
    echo "cross [$name]: ${cc[0]} not found (Debian: gcc-arm-none-eabi / gcc-riscv64-unknown-elf)"
    failed=$((failed + 1))
    return
  fi
  targets=$((targets + 1))
  echo "cross [$name]: ${cc[*]} ${WARN[*]}"
  for profile in "${profile_names[@]}"; do
    read -r -a defs <<<"${profile_flags[$profile]}"
    echo "cross [$profile/$name]: ${defs[*]:-(defaults)}"
    for f in "${portable[@]}"; do compile "$profile/$name" "${cc[@]}" "${defs[@]}" -- "$f"; done
    compile "$profile/$name" "${cc[@]}" "${defs[@]}" -- "$backend" -isystem "$MBEDINC"
    compile "$profile/$name" "${cc[@]}" "${defs[@]}" -- "$port" "${port_inc[@]}" -DESP_PLATFORM=1
    for f in "${uart[@]}"; do
      compile "$profile/$name" "${cc[@]}" "${defs[@]}" -- "$f" "${port_inc[@]}" -DESP_PLATFORM=1
    done
    # The port's other entropy source (CONFIG_USMP_ESP32_RNG_NO_RF).
    compile "$profile/$name/rng-no-rf" "${cc[@]}" "${defs[@]}" -- "$port" "${port_inc[@]}" \
      -DESP_PLATFORM=1 -DUSMP_ESP32_RNG_NO_RF=1
    if [ "$profile" = ota ]; then
      compile "$profile/$name" "${cc[@]}" "${defs[@]}" -- "$ROOT/ota/usmp_ota.c"
      compile "$profile/$name" "${cc[@]}" "${defs[@]}" -- "$ota_port" "${ota_inc[@]}" -DESP_PLATFORM=1
      compile "$profile/$name" "${cc[@]}" "${defs[@]}" -- "$backend" -isystem "$MBEDINC" \
        -DUSMP_ED25519_EXTERNAL=1
      if [ -n "$sodium_src" ]; then
        compile "$profile/$name" "${cc[@]}" "${defs[@]}" -- "$ROOT/crypto/ed25519/usmp_ed25519_libsodium.c" \
          -isystem "$sodium_src/src/libsodium/include"
      else
        echo "cross [$profile/$name]: no libsodium source under build/deps/src (tools/install-deps.sh)"
        failed=$((failed + 1))
      fi
    fi
  done
}

if [ -f /usr/include/newlib/string.h ]; then
  build_target rv32imc riscv64-unknown-elf-gcc -march=rv32imc -mabi=ilp32 -isystem /usr/include/newlib
else
  echo "cross [rv32imc]: /usr/include/newlib missing (Debian: libnewlib-dev)"
  failed=$((failed + 1))
fi
build_target cortex-m4 arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb

echo "cross: $files files compiled for $targets targets x ${#profile_names[@]} profiles (${profile_names[*]}), $failed failed"
[ "$failed" -eq 0 ]
