# USMP top-level commands. `make help` lists them.
#
# Everything runs on Debian's /usr/bin/python3, which is where Debian's
# python3-* packages (cryptography, pytest, mypy) are installed.
PYTHON ?= /usr/bin/python3

.PHONY: help deps demo test footprint vectors check-vectors clean

help:
	@echo "make demo           install missing Debian packages, build, run a simulated device against the Python gateway,"
	@echo "                    then the C gateway over UDP and a serial line with the Python client"
	@echo "make test           install missing Debian packages, build every configuration, run every test"
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

footprint: deps
	$(PYTHON) targets/run.py --footprint

vectors:
	$(PYTHON) tools/gen_vectors.py

check-vectors:
	$(PYTHON) tools/gen_vectors.py --check

clean:
	rm -rf build
