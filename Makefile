# creatio-attach: the two commands users need are `make demo` and `make test`.
# Only Python >= 3.11, make and Debian's libmagic (package libmagic1) are assumed;
# everything else is installed into .venv here.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test demo lint bench soak check-system clean

check-system:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
	  || { echo "creatio-attach needs Python >= 3.11 (found: $$($(PYTHON) --version 2>&1))"; exit 1; }
	@$(PYTHON) -c 'import ctypes.util, sys; sys.exit(0 if ctypes.util.find_library("magic") else 1)' \
	  || { echo "libmagic is missing: install it with 'apt-get install libmagic1' (Debian/Ubuntu) or your system's equivalent"; exit 1; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { echo "could not create a virtualenv: install Python's venv module (Debian: apt-get install python3-venv)"; exit 1; }

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

## make test: every test, against the embedded emulator over loopback
test: check-system $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

## make lint: ruff and mypy (strict on daemon/)
lint: $(STAMP)
	$(BIN)/ruff check daemon tests benchmarks
	$(BIN)/ruff format --check daemon tests benchmarks
	$(BIN)/mypy

## make demo: the main job on the embedded emulator, end to end
demo: check-system $(STAMP)
	$(BIN)/creatio-attach demo

## make bench: benchmarks (a report, not a timed test)
bench: check-system $(STAMP)
	$(BIN)/python -m benchmarks

## make soak: the call-recording end-to-end test at the issue's scale
## (500 recordings, Call rows up to 3 minutes late; about 5 minutes)
soak: check-system $(STAMP)
	CREATIO_ATTACH_SOAK_RECORDINGS=500 CREATIO_ATTACH_SOAK_PBX_THREADS=10 \
	CREATIO_ATTACH_SOAK_MAX_CALL_DELAY=180 CREATIO_ATTACH_SOAK_CALL_WAIT=190 \
	CREATIO_ATTACH_SOAK_UNMATCHED_RETRY=5 \
	$(BIN)/python -m pytest tests/test_recordings_e2e.py -q -p no:xdist

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
