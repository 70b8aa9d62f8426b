# crmvalue: `make train` and `make test` set up everything they need on first use.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# the versions the tests passed with; pyproject.toml keeps the ranges for library users
LOCK := requirements/lock.txt
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP := $(VENV)/.dev-stamp
CONFIG ?= experiments/cdnow.yaml

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) --upgrade pip

# runtime only (what `make train` needs), every version from the lock file
$(RUNTIME_STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) -e .
	@touch $@

# runtime + the dev extras (pytest, Jupyter, PySpark, ...), for `make test`
$(DEV_STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) -e '.[dev]'
	@touch $@ $(RUNTIME_STAMP)

install: $(DEV_STAMP) ## Create .venv (if missing) and install crmvalue with its dev tools, at the locked versions

train: $(RUNTIME_STAMP) ## Run the default experiment (CONFIG=experiments/cdnow.yaml) on the bundled CDNOW data
	$(BIN)/crmvalue train --config $(CONFIG)

experiments: $(RUNTIME_STAMP) ## Run every experiment in experiments/ (default, paper reproduction, simulated)
	@set -e; for config in experiments/*.yaml; do echo "== $$config"; $(BIN)/crmvalue train --config $$config; done

test: lint ## Lint and type-check, then run the test suite and the notebooks (with a throwaway PostgreSQL server if one is installed)
	.ci/with-postgres $(BIN)/python -m pytest

lint: $(DEV_STAMP) ## ruff (lint + format check) on src, tests and bench; mypy on src
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(DEV_STAMP) ## Benchmark against lifetimes and time `make train`; writes bench/results.md
	$(BIN)/python bench/run.py --repeats 3

strip: $(DEV_STAMP) ## Strip outputs from the notebooks before committing them (the tests fail otherwise)
	$(BIN)/nbstripout notebooks/*.ipynb

mlflow-ui: $(RUNTIME_STAMP) ## Browse the runs at http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

lock: ## Refresh requirements/lock.txt to the newest versions pyproject.toml allows (on purpose, never by accident)
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet '.[dev]'
	@mkdir -p $(dir $(LOCK))
	{ echo "# pip constraints: the versions crmvalue was last tested with. Refresh with 'make lock', then run 'make test'."; \
	  .venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -v -i '^crmvalue' ; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock
	@echo "$(LOCK) refreshed: run 'make test' (it reinstalls .venv from the new lock) before committing it"

test-latest: ## Run the tests against the newest versions pyproject.toml allows, ignoring the lock (in .venv-latest)
	rm -rf .venv-latest && $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet -e '.[dev]'
	.venv-latest/bin/ruff check src tests bench && .venv-latest/bin/mypy
	.ci/with-postgres .venv-latest/bin/python -m pytest

clean: ## Remove generated outputs (runs, exports, trained models), keep .venv
	rm -rf mlruns mlflow.db mlflow.db.lock crm.db exports .pytest_cache
	find models -mindepth 1 ! -name .gitkeep -exec rm -rf {} +

.PHONY: help install train experiments test lint test-latest lock bench strip mlflow-ui clean
