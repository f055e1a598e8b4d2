# `make demo` runs the main job, `make test` the whole suite; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-basics test bench setup clean

setup: $(STAMP)

COLLECTIONS := $(wildcard collections/*/pyproject.toml)

# plait itself and every collection, editable, with their test extras
$(STAMP): pyproject.toml $(COLLECTIONS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]' $(foreach c,$(COLLECTIONS),-e '$(patsubst %/,%,$(dir $(c)))[test]')
	touch $(STAMP)

# the main job: extract -> land -> load -> dbt build -> announce, then the recorded runs
demo: $(STAMP)
	PLAIT_HOME=$${PLAIT_HOME:-$(CURDIR)/.plait-demo} $(BIN)/python examples/warehouse/flow.py
	PLAIT_HOME=$${PLAIT_HOME:-$(CURDIR)/.plait-demo} $(BIN)/plait flow-run ls --limit 10

# the core engine alone: retries, caching, map and a failure
demo-basics: $(STAMP)
	PLAIT_HOME=$${PLAIT_HOME:-$(CURDIR)/.plait-demo} $(BIN)/python examples/demo.py
	PLAIT_HOME=$${PLAIT_HOME:-$(CURDIR)/.plait-demo} $(BIN)/plait flow-run ls --limit 10

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .plait-demo
