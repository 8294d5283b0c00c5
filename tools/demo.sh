#!/usr/bin/env bash
# The main job (`make demo`): build, start the Python gateway on loopback,
# run the simulated C device against it (the same application code as the
# ESP32 example), show the exchange, stop everything cleanly.
#
# A fresh random PSK is made for this run only and kept in a temporary file
# that is removed at the end: USMP has no default key.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
BUILD="$ROOT/build/demo"
WORK=$(mktemp -d)
GATEWAY_PID=""
cleanup() {
  if [ -n "$GATEWAY_PID" ] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
    kill -INT "$GATEWAY_PID" 2>/dev/null || true
    wait "$GATEWAY_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

say "building the C core, the POSIX port and the simulated device"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DUSMP_CRYPTO=openssl \
      -DUSMP_BUILD_TESTS=OFF >"$WORK/configure.log" 2>&1 || { cat "$WORK/configure.log"; exit 1; }
cmake --build "$BUILD" -j "$(nproc 2>/dev/null || echo 2)" --target usmp_device_demo >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log"; exit 1; }
echo "built $BUILD/usmp_device"

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

if [ "$DEVICE_STATUS" -eq 0 ]; then
  say "done: handshake, four messages each way, clean close"
fi
exit "$DEVICE_STATUS"
