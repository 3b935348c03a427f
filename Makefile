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

# The C sources too: a changed token counter is rebuilt by the next make.
$(VENV)/.installed: pyproject.toml $(wildcard gateway/usage/*.c gateway/usage/*.h)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev,local]'
	touch $@

.PHONY: install serve test evals lint mutate bench-setup bench bench-quick bench-soak bench-profile
install: $(VENV)/.installed

serve: install
	$(VENV)/bin/gateway serve --config $(CONFIG) --host $(HOST) --port $(PORT)

TEST_WORKERS ?= 3
test: install
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The shipped eval suites (evals/), in process on the shipped config, offline: prompts synced from prompts/, the judge's
# answers replayed from its cassette; a throwaway database under $(EVAL_DIR). CI runs it after the tests.
EVAL_DIR ?= .eval-run
evals: install
	rm -rf $(EVAL_DIR) && mkdir -p $(EVAL_DIR)
	GATEWAY_DATABASE_URL=sqlite:///$(EVAL_DIR)/gateway.db GATEWAY_SPOOL_DIR=$(EVAL_DIR)/spool \
	  $(VENV)/bin/gateway eval run evals/ --config $(CONFIG) --sync-prompts prompts/ \
	  --replay evals/cassettes/judge.json --no-cache --junit '$(EVAL_DIR)/junit.{suite}.xml' --markdown $(EVAL_DIR)/summary.md

lint: install
	$(VENV)/bin/ruff check gateway tests bench tools
	$(VENV)/bin/ruff format --check gateway tests bench tools

# Mutation testing of the governance core (not run by CI: every mutant reruns its module's tests; README has the
# table). `make mutate MODULE=counters_memory` runs one module; tools/mutate/RESULTS.md lists the survivors.
MODULE ?=
mutate: install
	$(VENV)/bin/python -m tools.mutate $(MODULE)

# Benchmarks (not run by CI; bench/README.md): wrk from Debian, LiteLLM proxy in its own venv.
bench-setup:
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	test -x bench/.venv-litellm/bin/litellm || ($(PYTHON) -m venv bench/.venv-litellm && bench/.venv-litellm/bin/pip install --quiet 'litellm[proxy]')

bench: install
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

bench-quick: install
	$(VENV)/bin/python bench/run.py --quick

bench-soak: install
	$(VENV)/bin/python bench/run.py --soak $(SOAK_N)

bench-profile: install
	$(VENV)/bin/pip install --quiet py-spy && $(VENV)/bin/python bench/run.py --profile bench/PROFILE.md
