# crmvalue: `make train` and `make test` set up everything they need on first use.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= experiments/cdnow.yaml

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP) ## Create .venv (if missing) and install crmvalue with its dev tools

train: $(STAMP) ## Run the default experiment (CONFIG=experiments/cdnow.yaml) on the bundled CDNOW data
	$(BIN)/crmvalue train --config $(CONFIG)

experiments: $(STAMP) ## Run every experiment in experiments/ (default, paper reproduction, simulated)
	@set -e; for config in experiments/*.yaml; do echo "== $$config"; $(BIN)/crmvalue train --config $$config; done

test: $(STAMP) ## Run the test suite and execute the notebooks (with a throwaway PostgreSQL server if one is installed)
	.ci/with-postgres $(BIN)/python -m pytest

bench: $(STAMP) ## Benchmark against lifetimes and time `make train`; writes bench/results.md
	$(BIN)/python bench/run.py --repeats 3

strip: $(STAMP) ## Strip outputs from the notebooks before committing them (the tests fail otherwise)
	$(BIN)/nbstripout notebooks/*.ipynb

mlflow-ui: $(STAMP) ## Browse the runs at http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

clean: ## Remove generated outputs (runs, exports, trained models), keep .venv
	rm -rf mlruns mlflow.db crm.db exports .pytest_cache
	find models -mindepth 1 ! -name .gitkeep -exec rm -rf {} +

.PHONY: help install train experiments test bench strip mlflow-ui clean
