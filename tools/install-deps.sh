#!/usr/bin/env bash
# Installs, from Debian's archive, every package the build, the tests and the
# demo need. Idempotent: packages already present are not touched, so a
# second run costs one dpkg query.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libmbedtls-dev libssl-dev
  valgrind clang libclang-rt-14-dev
  gcc-arm-none-eabi libnewlib-arm-none-eabi gcc-riscv64-unknown-elf libnewlib-dev
  python3-kconfiglib python3-yaml git
  python3 python3-cryptography python3-pytest python3-mypy python3-hypothesis python3-serial
  python3-setuptools python3-venv python3-pip
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
