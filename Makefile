PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCENARIO ?= scenarios/field_service.yaml

.PHONY: install run test lint typecheck bench chaos clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

run: install
	$(BIN)/syncsim run $(SCENARIO)

test:
	$(BIN)/ruff check simulator tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check simulator tests bench

typecheck:
	$(BIN)/mypy

bench:
	$(BIN)/python -m bench

# The fault matrix: every fault kind at once; prints faults injected by kind and every invariant
# checked; exits 1 on any violation.
chaos: install
	$(BIN)/syncsim run scenarios/chaos.yaml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
