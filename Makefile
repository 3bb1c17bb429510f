# Every target installs what it needs: a fresh clone only needs Python 3.11+ (and npm for the
# offline GraphiQL assets; without npm the page falls back to Strawberry's own).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENDOR := app/static/vendor/graphiql.min.js
# Installs follow uv.lock exactly; uv itself comes from PyPI at this version (the Dockerfile pins
# the same one).
UV_VERSION := 0.13.9
UV := $(BIN)/uv
UV_STAMP := $(VENV)/.uv-$(UV_VERSION)
# uv reads none of pip's settings: it resolves from PyPI alone, uses the Python that made .venv
# rather than downloading one, and trusts the system's certificates as curl and git do.
export UV_PYTHON_DOWNLOADS := never
export UV_SYSTEM_CERTS ?= 1

.PHONY: run test lint format install lock static migrate seed worker bench clean

run: install static migrate seed
	$(BIN)/tradegraph serve

test: install static lint
	$(BIN)/pytest $(PYTEST_ARGS)

install: $(STAMP)

# --locked refuses a uv.lock that no longer matches pyproject.toml (`make lock` updates it).
# --inexact keeps what the lock does not list: the uv that is running and the venv's own pip
# (and setuptools, before Python 3.12). Anything else was left by an older lock or by hand;
# `make clean install` drops it.
$(STAMP): pyproject.toml uv.lock $(UV_STAMP)
	$(UV) sync --locked --inexact --extra dev
	touch $(STAMP)

$(UV_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	touch $(UV_STAMP)

# Re-resolve after editing the dependencies in pyproject.toml; commit both files together.
# `$(UV) lock --upgrade-package NAME` moves one package to its newest allowed version.
lock: $(UV_STAMP)
	$(UV) lock

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
