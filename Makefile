# The two commands of the README: `make serve` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= gateway.yaml
HOST ?= 127.0.0.1
PORT ?= 4000

# Offline facts (DESIGN.md §7): nothing may download at run time.
export LITELLM_LOCAL_MODEL_COST_MAP = True
export HF_HUB_OFFLINE = 1
export GATEWAY_MASTER_KEY ?= sk-gateway-dev-master-key

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

.PHONY: install serve test lint
install: $(VENV)/.installed

serve: install
	$(VENV)/bin/gateway serve --config $(CONFIG) --host $(HOST) --port $(PORT)

test: install
	$(VENV)/bin/python -m pytest

lint: install
	$(VENV)/bin/ruff check gateway tests
	$(VENV)/bin/ruff format --check gateway tests
