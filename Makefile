# Front door. `make serve` runs the product, `make test` tests it; both install on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# cuda when an NVIDIA GPU answers, else vLLM's CPU build. Override: make serve ENGINE=cpu
ENGINE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
VENV_STAMP := $(VENV)/.installed-$(ENGINE)
PYTEST_ARGS ?=

.PHONY: help install serve test test-services test-unit test-e2e lint typecheck smoke clean

help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV_STAMP): pyproject.toml requirements/engine-$(ENGINE).txt
	@echo ">> install: into $(VENV) (engine: $(ENGINE)), once; later runs reuse it"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@echo ">> install 1/2: the engine (requirements/engine-$(ENGINE).txt, the big one: minutes)"
	@SECONDS=0; $(PY) -m pip install --quiet -r requirements/engine-$(ENGINE).txt && echo "   done in $${SECONDS}s"
	@echo ">> install 2/2: the sidecar, launcher and dev tools (pyproject.toml)"
	@SECONDS=0; $(PY) -m pip install --quiet -e '.[dev]' && echo "   done in $${SECONDS}s"
	@# Packages vLLM brings along that break transformers' imports next to torch 2.13+cpu:
	@# one list, shared with Dockerfile.cpu. tests/test_install.py guards this.
	@$(PY) -m pip uninstall --quiet -y -r requirements/remove-after-install.txt
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo ">> install: done"

install: $(VENV_STAMP) ## create .venv and install everything (automatic)

serve: $(VENV_STAMP) ## run the product: vLLM + sidecar on http://127.0.0.1:8000 (VERBOSE=1: vLLM's output too)
	$(PY) -m serving up $(if $(VERBOSE),--verbose)

test: $(VENV_STAMP) test-services ## unit + end-to-end tests (starts the real stack once)
	$(PY) -m pytest $(PYTEST_ARGS)

# The shared-limit tests run a real redis-server on loopback (the product never needs one).
test-services:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo ">> installing redis-server for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else echo "note: redis-server not installed; the shared-limit tests will be skipped"; fi; }

test-unit: $(VENV_STAMP) ## unit tests only (no engine)
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

test-e2e: $(VENV_STAMP) ## end-to-end tests only
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

lint: $(VENV_STAMP) ## ruff + mypy
	$(PY) -m ruff check serving tests benchmarks
	$(PY) -m mypy

smoke: $(VENV_STAMP) ## build (or reuse) the smoke checkpoint
	$(PY) -m serving.smoke

clean: ## remove the venv and local state (keeps the smoke-checkpoint cache)
	rm -rf $(VENV) .serving .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk
