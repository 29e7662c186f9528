# Hive-Mind: `make run` to start everything, `make test` to run the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export HIVEMIND_DATA_DIR ?= $(CURDIR)/var

.PHONY: install run test lint bench images base-image quadlet-check test-containers containers-setup clean

install:
	@bash scripts/install.sh

run: install
	$(VENV)/bin/hivemind up

test: install quadlet-check
	$(PY) -m pytest tests

lint: install
	$(VENV)/bin/ruff check libs services tests bench
	$(VENV)/bin/ruff format --check libs services tests bench
	$(VENV)/bin/mypy libs/common/hivemind_common libs/client/hivemind_client libs/cli/hivemind_cli \
	  $(filter-out %.egg-info,$(wildcard services/*/hivemind_*))

bench: install
	$(PY) -m bench.run_all --out var/bench

# --- containers (docs/deploy.md) -------------------------------------------------------------
# `make images` builds every service image on the public Python base; `make images LOCAL_BASE=1`
# (or BASE_IMAGE=<image>) builds on the registry-free local base that `make base-image` makes.
LOCAL_BASE_IMAGE := localhost/hivemind-base:bookworm
ifeq ($(LOCAL_BASE),1)
BASE_IMAGE ?= $(LOCAL_BASE_IMAGE)
endif
IMAGE_SERVICES ?= gateway mcp embedding inference trainer exporter

containers-setup:
	@bash scripts/setup-containers.sh

base-image: containers-setup
	BASE_IMAGE=$(LOCAL_BASE_IMAGE) bash deploy/images/build-base.sh

images: install containers-setup $(if $(filter $(LOCAL_BASE_IMAGE),$(BASE_IMAGE)),base-image)
	BASE_IMAGE=$(BASE_IMAGE) bash deploy/images/build.sh $(IMAGE_SERVICES)

quadlet-check: install containers-setup
	$(PY) tests/support/quadlet_check.py

test-containers: install containers-setup
	HIVEMIND_CONTAINER_TESTS=1 $(PY) -m pytest tests/deploy -m containers

clean:
	rm -rf var/bench .pytest_cache .mypy_cache .ruff_cache
