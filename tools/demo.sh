#!/usr/bin/env bash
# The main job (`make demo`): build, start the Python gateway on loopback,
# run the simulated C device against it (the same application code as the
# ESP32 example), show the exchange, stop everything cleanly. Then the
# datagram transports, in two more short runs: the C gateway (usmp_server)
# over UDP and over a serial line (a pseudo-terminal pair), each with the
# Python client (`usmp connect udp://...`, `serial://...`).
#
# A fresh random PSK is made for this run only and kept in a temporary file
# that is removed at the end: USMP has no default key.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
BUILD="$ROOT/build/demo"
WORK=$(mktemp -d)
GATEWAY_PID=""
LINK_PID=""
cleanup() {
  if [ -n "$GATEWAY_PID" ] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
    kill -INT "$GATEWAY_PID" 2>/dev/null || true
    wait "$GATEWAY_PID" 2>/dev/null || true
  fi
  if [ -n "$LINK_PID" ] && kill -0 "$LINK_PID" 2>/dev/null; then
    kill -TERM "$LINK_PID" 2>/dev/null || true
    wait "$LINK_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

say "building the C core, the POSIX port and the simulated device"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DUSMP_CRYPTO=openssl \
      -DUSMP_BUILD_TESTS=OFF >"$WORK/configure.log" 2>&1 || { cat "$WORK/configure.log"; exit 1; }
cmake --build "$BUILD" -j "$(nproc 2>/dev/null || echo 2)" --target usmp_device_demo usmp_server >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log"; exit 1; }
echo "built $BUILD/usmp_device and $BUILD/usmp_server"

say "making a one-time device key (usmp keygen) for device deadbeef0001"
export PYTHONPATH="$ROOT/python/src${PYTHONPATH:+:$PYTHONPATH}"
KEY=$("$PYTHON" -m usmp keygen)
printf 'deadbeef0001 %s   # demo device, this run only\n' "$KEY" >"$WORK/devices.psk"
echo "key written to a temporary PSK file (not shown)"

say "starting the Python gateway: usmp serve --host 127.0.0.1 --port 0"
"$PYTHON" -u -m usmp serve --host 127.0.0.1 --port 0 --psk-file "$WORK/devices.psk" \
  >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
PORT=""
for _ in $(seq 1 100); do
  PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/gateway.log" | head -n 1)
  [ -n "$PORT" ] && break
  if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then cat "$WORK/gateway.log"; exit 1; fi
  sleep 0.1
done
[ -n "$PORT" ] || { echo "the gateway did not start:"; cat "$WORK/gateway.log"; exit 1; }
sed 's/^/gateway: /' "$WORK/gateway.log"

say "running the simulated device (examples/posix_device, the ESP32 example's application)"
"$BUILD/usmp_device" --psk-file "$WORK/devices.psk" --device-id deadbeef0001 \
  --host 127.0.0.1 --port "$PORT" \
  "hello from a USMP device" "temperature=21.5C humidity=40%" "" \
  "a longer reading: $(printf '%0.s0123456789' $(seq 1 20))" 2>&1
DEVICE_STATUS=$?

say "stopping the gateway (SIGINT: BYE to every session, then exit)"
kill -INT "$GATEWAY_PID"
wait "$GATEWAY_PID" || true
GATEWAY_PID=""
sed 's/^/gateway: /' "$WORK/gateway.log" | tail -n +2

if [ "$DEVICE_STATUS" -ne 0 ]; then
  exit "$DEVICE_STATUS"
fi
say "TCP done: handshake, four messages each way, clean close"

# Waits until file $1 has a line matching sed expression $2 (prints the match).
wait_for_line() {
  local found=""
  for _ in $(seq 1 100); do
    found=$(sed -n "$2" "$1" | head -n 1)
    [ -n "$found" ] && { echo "$found"; return 0; }
    sleep 0.1
  done
  return 1
}

stop_gateway() {
  kill -INT "$GATEWAY_PID"
  wait "$GATEWAY_PID" || true
  GATEWAY_PID=""
  sed 's/^/gateway: /' "$WORK/gateway.log"
}

if ! "$PYTHON" -c 'import usmp.udp, usmp.serial_link' 2>/dev/null || [ ! -f "$ROOT/tools/lossy_link.py" ]; then
  say "UDP and serial runs skipped: this checkout has no Python UDP and serial transports"
  exit 0
fi

say "UDP: the C gateway, usmp_server --udp 0, and the Python client, usmp connect udp://..."
"$BUILD/usmp_server" --psk-file "$WORK/devices.psk" --host 127.0.0.1 --udp 0 >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
PORT=$(wait_for_line "$WORK/gateway.log" 's/^usmp_server: udp on 127\.0\.0\.1:\([0-9]*\).*/\1/p') \
  || { echo "the C gateway did not start:"; cat "$WORK/gateway.log"; exit 1; }
printf 'hello over UDP\ntemperature=21.5C\n' \
  | "$PYTHON" -m usmp connect "udp://127.0.0.1:$PORT" --device-id deadbeef0001 --psk-file "$WORK/devices.psk" \
  | sed 's/^/device received: /'
stop_gateway

say "serial: a pseudo-terminal pair (tools/lossy_link.py pty), usmp_server --serial on one end, usmp connect serial:// on the other"
"$PYTHON" -u "$ROOT/tools/lossy_link.py" pty --seed 1 >"$WORK/link.log" 2>&1 &
LINK_PID=$!
wait_for_line "$WORK/link.log" '/^gateway /p' >/dev/null || { cat "$WORK/link.log"; exit 1; }
mapfile -t PTYS < <(grep -o '/dev/[^ ]*' "$WORK/link.log" | head -n 2)
"$BUILD/usmp_server" --psk-file "$WORK/devices.psk" --serial "${PTYS[1]}" --baud 115200 >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
wait_for_line "$WORK/gateway.log" '/serving/p' >/dev/null || { cat "$WORK/gateway.log"; exit 1; }
printf 'hello over a serial line\nhumidity=40%%\n' \
  | "$PYTHON" -m usmp connect "serial://${PTYS[0]}?baud=115200" --device-id deadbeef0001 \
      --psk-file "$WORK/devices.psk" | sed 's/^/device received: /'
stop_gateway
kill -TERM "$LINK_PID" 2>/dev/null || true  # a background job ignores SIGINT
wait "$LINK_PID" 2>/dev/null || true
LINK_PID=""
say "done: TCP, UDP and a serial line"
