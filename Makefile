PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCENARIO ?= scenarios/field_service.yaml

.PHONY: install run test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

run: install
	$(BIN)/syncsim run $(SCENARIO)

test:
	$(BIN)/ruff check simulator tests bench
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check simulator tests bench

bench:
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
