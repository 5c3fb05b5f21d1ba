PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCENARIO ?= scenarios/field_service.yaml

.PHONY: install run test lint typecheck bench chaos nightly clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

run: install
	$(BIN)/syncsim run $(SCENARIO)

test:
	$(BIN)/ruff check simulator tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check simulator tests bench examples

typecheck:
	$(BIN)/mypy

bench:
	$(BIN)/python -m bench

# The nightly scaling benchmark: three fleet sizes on fresh servers (< 15 min on 2 cores); with
# BASELINE=file it compares and fails on a regression; SAVE=file stores this result as a baseline.
NIGHTLY_SIZES ?= 50,100,200
nightly: install
	$(BIN)/syncsim bench scenarios/nightly.yaml --devices $(NIGHTLY_SIZES) --out reports/nightly \
		$(if $(BASELINE),--baseline $(BASELINE)) $(if $(SAVE),--save-baseline $(SAVE))

# The fault matrix: every fault kind at once; prints faults injected by kind and every invariant
# checked; exits 1 on any violation.
chaos: install
	$(BIN)/syncsim run scenarios/chaos.yaml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
