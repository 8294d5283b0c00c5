#!/usr/bin/env bash
# Runs every test of the project and ends with each runner's summary line.
# Called by `make test` and by CI (.ci/run). Build trees go to build/.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-/usr/bin/python3}
JOBS=$(nproc 2>/dev/null || echo 2)
BUILD=${USMP_BUILD_DIR:-$ROOT/build}
mkdir -p "$BUILD"

summaries=()
failed=0
started=$(date +%s)

stage() { printf '\n=== %s ===\n' "$*"; }

# Runs ctest in a configured build tree and keeps its summary line.
run_ctest() {
  local name=$1 dir=$2
  local log="$BUILD/$name.ctest.log"
  (cd "$dir" && ctest --output-on-failure -j "$JOBS") 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  local line
  line=$(grep -E 'tests passed|tests failed' "$log" | tail -n 1)
  summaries+=("ctest [$name]: ${line:-no summary (exit $status)}")
  [ "$status" -eq 0 ] || failed=1
}

# Configures and builds one C configuration: name, then cmake -D options.
build_c() {
  local name=$1; shift
  local dir="$BUILD/$name"
  stage "build $name"
  if ! cmake -S "$ROOT" -B "$dir" -DUSMP_WERROR=ON -DPython3_EXECUTABLE="$PYTHON" "$@" >"$BUILD/$name.configure.log" 2>&1; then
    cat "$BUILD/$name.configure.log"
    summaries+=("build [$name]: configure FAILED")
    failed=1
    return 1
  fi
  if ! cmake --build "$dir" -j "$JOBS" 2>&1 | tail -n 40; then :; fi
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    summaries+=("build [$name]: build FAILED")
    failed=1
    return 1
  fi
  return 0
}

# --- C: every crypto backend under ASan+UBSan, and under valgrind --------
for backend in openssl mbedtls; do
  if build_c "$backend-asan" -DUSMP_CRYPTO="$backend" -DUSMP_SANITIZE=ON; then
    stage "test $backend-asan"
    run_ctest "$backend-asan" "$BUILD/$backend-asan"
  fi
  if build_c "$backend-valgrind" -DUSMP_CRYPTO="$backend" -DUSMP_TEST_LAUNCHER="valgrind;--quiet;--error-exitcode=99;--leak-check=full;--errors-for-leak-kinds=definite,indirect" -DUSMP_TEST_ENVIRONMENT="USMP_TEST_STRIDE=7"; then
    stage "test $backend-valgrind"
    run_ctest "$backend-valgrind" "$BUILD/$backend-valgrind"
  fi
done

# --- C: the device profile (no server role, no datagram mode) under ASan -----
# What ports/esp32 builds by default. Tests that need a compiled-out feature
# are left out by tests/CMakeLists.txt, which names each one in the
# configure log; the device programs run against the Python gateway.
if build_c device-asan -DUSMP_CRYPTO=openssl -DUSMP_SANITIZE=ON -DUSMP_SERVER=OFF -DUSMP_DATAGRAM=OFF; then
  grep -E '^-- usmp: ' "$BUILD/device-asan.configure.log"
  stage "test device-asan"
  run_ctest device-asan "$BUILD/device-asan"
fi

# --- C: the X25519 providers of the device crypto profiles -------------------
# mbedTLS with X25519 from libsodium (the fast profile) and from HACL*
# (mbedTLS's 3rdparty/everest: the small profile), under ASan+UBSan: the
# crypto seam's tests (Wycheproof's x25519_test.json, low-order points to
# BAD_KEY) and everything that runs a handshake through it.
for provider in libsodium everest; do
  if build_c "x25519-$provider-asan" -DUSMP_CRYPTO=mbedtls -DUSMP_X25519="$provider" -DUSMP_SANITIZE=ON; then
    stage "test x25519-$provider-asan"
    (cd "$BUILD/x25519-$provider-asan" && ctest --output-on-failure -j "$JOBS" -R '^(crypto|vectors|engine|device)$') 2>&1 \
      | tee "$BUILD/x25519-$provider-asan.ctest.log"
    status=${PIPESTATUS[0]}
    line=$(grep -E 'tests passed|tests failed' "$BUILD/x25519-$provider-asan.ctest.log" | tail -n 1)
    summaries+=("ctest [x25519-$provider-asan]: ${line:-no summary (exit $status)}")
    [ "$status" -eq 0 ] || failed=1
  fi
done

# --- C: mbedTLS with USMP_AEAD_KEEP_CONTEXT=OFF, under ASan -----------------
# The record keys as the footprint profiles and ESP-IDF keep them (the key
# alone, a GCM context on the stack per record): only the three tests that
# run AES-GCM through usmp_aead_t (the seam with Wycheproof, spec/vectors,
# the engine), so the configuration costs three programs, not a whole build.
name=aead-per-call-asan
stage "build $name"
if cmake -S "$ROOT" -B "$BUILD/$name" -DUSMP_WERROR=ON -DPython3_EXECUTABLE="$PYTHON" \
     -DUSMP_CRYPTO=mbedtls -DUSMP_AEAD_KEEP_CONTEXT=OFF -DUSMP_SANITIZE=ON >"$BUILD/$name.configure.log" 2>&1 \
   && cmake --build "$BUILD/$name" -j "$JOBS" --target test_crypto test_vectors test_engine 2>&1 | tail -n 40 \
   && [ "${PIPESTATUS[0]}" -eq 0 ]; then
  stage "test $name"
  (cd "$BUILD/$name" && ctest --output-on-failure -j "$JOBS" -R '^(crypto|vectors|engine)$') 2>&1 \
    | tee "$BUILD/$name.ctest.log"
  status=${PIPESTATUS[0]}
  line=$(grep -E 'tests passed|tests failed' "$BUILD/$name.ctest.log" | tail -n 1)
  summaries+=("ctest [$name]: ${line:-no summary (exit $status)}")
  [ "$status" -eq 0 ] || failed=1
else
  cat "$BUILD/$name.configure.log"
  summaries+=("build [$name]: FAILED")
  failed=1
fi

# --- fuzzing: clang + libFuzzer, which also builds everything with clang -----
# Every parser's target: the engine (both roles, both modes), COBS, the COBS
# stream deframer of the UART transport, the C gateway's UDP demultiplexer,
# the OTA module's manifest checks and message parser.
FUZZ_SECONDS=${USMP_FUZZ_SECONDS:-20}
if build_c fuzz-clang -DUSMP_CRYPTO=openssl -DUSMP_FUZZ=ON -DCMAKE_C_COMPILER=clang; then
  for target in engine cobs cobs_stream udp_gateway ota_manifest ota_message; do
    stage "fuzz $target (${FUZZ_SECONDS}s)"
    corpus="$BUILD/fuzz-corpus/$target"
    mkdir -p "$corpus"
    cp -n "$BUILD/fuzz-clang/tests/fuzz-seeds/$target/"* "$corpus/" 2>/dev/null || true
    log="$BUILD/fuzz-$target.log"
    "$BUILD/fuzz-clang/tests/fuzz_$target" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
      "$corpus" >"$log" 2>&1
    status=$?
    tail -n 3 "$log"
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -n 1)
    if [ "$status" -eq 0 ]; then
      summaries+=("fuzz [$target]: ${runs:-?} in ${FUZZ_SECONDS}s, no crash, corpus $(ls "$corpus" | wc -l) inputs")
    else
      summaries+=("fuzz [$target]: FAILED (exit $status), see $log")
      failed=1
    fi
  done
fi

# --- stage: esp32 begin ------------------------------------------------------
# The ESP32 example built on the host against the ESP-IDF stand-ins (in the
# device, smallest and full feature profiles, and with the repository as a
# git dependency and as a packed one) and run against the Python gateway, then the core, crypto glue, mbedTLS backend and ESP32 port
# cross-compiled for rv32imc and Cortex-M4 with -Werror in the same three
# profiles (tests/esp32/README.md says what is real and what is a stand-in).
stage "esp32: host example against the gateway"
esp32_host_log="$BUILD/esp32-host.log"
"$PYTHON" tests/esp32/check_host_example.py --build-dir "$BUILD/esp32-host" 2>&1 | tee "$esp32_host_log"
esp32_host_status=${PIPESTATUS[0]}
stage "esp32: cross builds (rv32imc, Cortex-M4; full, device, smallest profiles)"
esp32_cross_log="$BUILD/esp32-cross.log"
bash tests/esp32/cross_build.sh "$BUILD/esp32-cross" 2>&1 | tee "$esp32_cross_log"
esp32_cross_status=${PIPESTATUS[0]}
# The footprint benchmark (all three profiles in one run) fails the stage
# only if it cannot run; a missed goal is a figure to read
# (docs/footprint.md), not a test failure.
stage "esp32: footprint (bench/footprint)"
esp32_fp_log="$BUILD/esp32-footprint.log"
"$PYTHON" bench/footprint/footprint.py --build-dir "$BUILD/footprint" 2>&1 | tee "$esp32_fp_log"
esp32_fp_status=${PIPESTATUS[0]}
summaries+=("esp32 host+cross: $(tail -n 1 "$esp32_host_log" | sed 's/^esp32 host example: //'); $(tail -n 1 "$esp32_cross_log")")
summaries+=("esp32 $(tail -n 1 "$esp32_fp_log")")
if [ "$esp32_host_status" -ne 0 ] || [ "$esp32_cross_status" -ne 0 ] || [ "$esp32_fp_status" -ne 0 ]; then
  failed=1
fi
# --- stage: esp32 end --------------------------------------------------------

# --- stage: emulated targets begin ---------------------------------------------
# The firmware of targets/ under QEMU (-icount shift=0): Cortex-M4
# (mps2-an386), rv32imc (virt) and Xtensa lx106 (sim; the ESP8266's core:
# Debian has no ESP32 LX6/LX7 toolchain or machine), each with the three
# X25519 providers: both engines reproduce spec/vectors, and the device API
# replays them against a scripted gateway; on Cortex-M4 and rv32imc the
# device API also runs datagram mode over the emulated UART (a QEMU pty)
# against the Python gateway's serial transport (`usmp serve --serial`),
# echoing messages and closing with BYE (lx106's sim machine has no UART).
# Any failed run fails the stage.
stage "emulated targets (QEMU: cortex-m4, rv32imc, xtensa-lx106)"
targets_log="$BUILD/targets.log"
"$PYTHON" targets/run.py --build-dir "$BUILD/targets" 2>&1 | tee "$targets_log"
targets_status=${PIPESTATUS[0]}
summaries+=("$(tail -n 1 "$targets_log")")
[ "$targets_status" -eq 0 ] || failed=1
# --- stage: emulated targets end -----------------------------------------------

# --- Python, spec, and C <-> Python interop -----------------------------------
# The interop tests run the C programs of the ASan build, so a memory error in
# the C gateway or device during an exchange fails the test. tests/wireshark
# runs the dissector under tshark, on vector captures and on live loopback
# sessions captured by dumpcap (root or the capture capability needed).
stage "pytest"
pytest_log="$BUILD/pytest.log"
pytest_dirs=(tests/spec tests/docs tests/build python/tests tests/wireshark)
[ -d tests/interop ] && pytest_dirs+=(tests/interop)
# The gateway against a real mosquitto and PostgreSQL, and the C device.
[ -d tests/gateway ] && pytest_dirs+=(tests/gateway)
# mDNS discovery on a LAN of two network namespaces (root; skipped, saying
# why, where namespaces are not permitted) and usmp monitor under tmux.
[ -d tests/discovery ] && pytest_dirs+=(tests/discovery)
USMP_C_BUILD="$BUILD/openssl-asan" \
  "$PYTHON" -m pytest -q -p no:cacheprovider "${pytest_dirs[@]}" 2>&1 | tee "$pytest_log"
status=${PIPESTATUS[0]}
summaries+=("pytest: $(tail -n 1 "$pytest_log" | sed 's/=//g; s/^ *//; s/ *$//')")
[ "$status" -eq 0 ] || failed=1

# --- Python types --------------------------------------------------------
stage "mypy --strict"
mypy_log="$BUILD/mypy.log"
"$PYTHON" -m mypy --strict --no-incremental python/src/usmp 2>&1 | tee "$mypy_log"
status=${PIPESTATUS[0]}
summaries+=("mypy: $(tail -n 1 "$mypy_log")")
[ "$status" -eq 0 ] || failed=1

elapsed=$(( $(date +%s) - started ))
stage "summary (${elapsed}s)"
for s in "${summaries[@]}"; do echo "$s"; done
if [ "$failed" -ne 0 ]; then
  echo "RESULT: FAILED"
  exit 1
fi
echo "RESULT: all test runners passed"
