# Hive-Mind: `make run` to start everything, `make test` to run the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export HIVEMIND_DATA_DIR ?= $(CURDIR)/var

.PHONY: install run test lint bench images base-image quadlet-check test-containers clean

install:
	@bash scripts/install.sh

run: install
	$(VENV)/bin/hivemind up

test: install
	$(PY) -m pytest tests

lint: install
	$(VENV)/bin/ruff check libs services tests bench
	$(VENV)/bin/ruff format --check libs services tests bench
	$(VENV)/bin/mypy libs/common/hivemind_common libs/cli/hivemind_cli services/*/hivemind_*

bench: install
	$(PY) -m bench.run_all --out var/bench

clean:
	rm -rf var/bench .pytest_cache .mypy_cache .ruff_cache
