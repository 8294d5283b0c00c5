# USMP top-level commands. `make help` lists them.
#
# Everything runs on Debian's /usr/bin/python3, which is where Debian's
# python3-* packages (cryptography, pytest, mypy) are installed.
PYTHON ?= /usr/bin/python3

.PHONY: help deps demo test bench soak footprint vectors check-vectors clean

help:
	@echo "make demo           install missing Debian packages, build, run a simulated device against the Python gateway,"
	@echo "                    then the C gateway over UDP and a serial line with the Python client"
	@echo "make test           install missing Debian packages, build every configuration, run every test"
	@echo "make bench          Release builds for OpenSSL and mbedTLS, then the engine against its backend's raw"
	@echo "                    X25519 and AES-256-GCM, the Python engine against cryptography, and both gateways"
	@echo "                    against TLS 1.3 servers over loopback (bench/README.md)"
	@echo "make soak           the MQTT gateway: SOAK_DEVICES devices (1000) for SOAK_SECONDS (600) through two gateways"
	@echo "                    with churn; messages sent, delivered, duplicated, lost, latency, gateway RSS (docs/gateway.md)"
	@echo "make bench-ota      Release builds of the simulated device (512- and 1024-byte records), then a firmware update"
	@echo "                    over loopback TCP and over a UART paced at 115,200 baud (bench/ota_throughput.py, docs/ota.md)"
	@echo "make footprint      the device's flash, RAM and instructions on emulated Cortex-M4, rv32imc, Xtensa lx106 (targets/run.py)"
	@echo "make vectors        regenerate spec/vectors/*.json from tools/gen_vectors.py"
	@echo "make check-vectors  fail if spec/vectors differ from the generator's output"
	@echo "make deps           install the Debian packages the build and tests need"
	@echo "make clean          remove build/"

deps:
	@bash tools/install-deps.sh

demo: deps
	@bash tools/demo.sh

test: deps
	@bash tools/run-tests.sh

# Not part of `make test`: the benchmark builds only with -DUSMP_BENCH=ON, in
# build directories of its own. BENCH_REPS: repetitions per figure.
BENCH_REPS ?= 15
# bench/loopback.py: repetitions per loopback figure (each a few seconds);
# LOOPBACK_ARGS: more of its options, e.g. --c-server-before PATH.
LOOPBACK_REPS ?= 5
bench: deps
	@for backend in openssl mbedtls; do \
	    cmake -S . -B build/bench-$$backend -DCMAKE_BUILD_TYPE=Release -DUSMP_BENCH=ON \
	        -DUSMP_BUILD_TESTS=OFF -DUSMP_WERROR=ON -DUSMP_CRYPTO=$$backend >/dev/null && \
	    cmake --build build/bench-$$backend -j2 --target usmp_bench >/dev/null || exit 1; \
	done
	@cmake --build build/bench-openssl -j2 --target usmp_server usmp_loadgen >/dev/null
	@build/bench-openssl/bench/c/usmp_bench $(BENCH_REPS) | tee build/bench-openssl/results.md
	@build/bench-mbedtls/bench/c/usmp_bench $(BENCH_REPS) | tee build/bench-mbedtls/results.md
	@$(PYTHON) bench/python_engine.py --repetitions $(BENCH_REPS) --c-results build/bench-openssl/results.md
	@$(PYTHON) bench/loopback.py --repetitions $(LOOPBACK_REPS) $(LOOPBACK_ARGS) | tee build/bench-openssl/loopback.md

# Not part of `make test`: the gateway under load for minutes (tools/gateway_soak.py).
SOAK_DEVICES ?= 1000
SOAK_SECONDS ?= 600
soak: deps
	$(PYTHON) tools/gateway_soak.py --devices $(SOAK_DEVICES) --duration $(SOAK_SECONDS)

# Not part of `make test` either: firmware update throughput (docs/ota.md).
bench-ota: deps
	@cmake -S . -B build/bench-ota -DCMAKE_BUILD_TYPE=Release -DUSMP_BUILD_TESTS=OFF -DUSMP_WERROR=ON \
	    -DUSMP_CRYPTO=openssl >/dev/null && cmake --build build/bench-ota -j2 --target usmp_device_demo >/dev/null
	@cmake -S . -B build/bench-ota-1024 -DCMAKE_BUILD_TYPE=Release -DUSMP_BUILD_TESTS=OFF -DUSMP_WERROR=ON \
	    -DUSMP_CRYPTO=openssl -DCMAKE_C_FLAGS=-DUSMP_MAX_RECORD=1024 >/dev/null && \
	    cmake --build build/bench-ota-1024 -j2 --target usmp_device_demo >/dev/null
	@$(PYTHON) bench/ota_throughput.py --c-build build/bench-ota --c-build build/bench-ota-1024 --repetitions 3

footprint: deps
	$(PYTHON) targets/run.py --footprint

vectors:
	$(PYTHON) tools/gen_vectors.py

check-vectors:
	$(PYTHON) tools/gen_vectors.py --check

clean:
	rm -rf build
