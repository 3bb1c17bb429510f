# Every target installs what it needs: a fresh clone only needs Python 3.11+ (and npm for the
# offline GraphiQL assets; without npm the page falls back to Strawberry's own).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENDOR := app/static/vendor/graphiql.min.js

.PHONY: run test lint format install static migrate seed worker bench clean

run: install static migrate seed
	$(BIN)/tradegraph serve

test: install static lint
	$(BIN)/pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

static: $(VENDOR)

$(VENDOR): scripts/fetch-static.sh
	sh scripts/fetch-static.sh

migrate: install
	$(BIN)/tradegraph migrate

# Simulated candle history, so a fresh install has something to trade (existing candles kept).
seed: migrate
	$(BIN)/tradegraph seed

worker: install
	$(BIN)/tradegraph worker

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var/*.db* .mypy_cache .pytest_cache .ruff_cache app/static/vendor
