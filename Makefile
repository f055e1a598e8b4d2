# `make demo` runs the main job, `make test` the whole suite; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-basics demo-server dashboard test lint bench setup clean wheelhouse

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

# the main job against a plait server: a server process, the job recording to it from a
# second process (PLAIT_API_URL), then the runs listed through the API
demo-server: $(STAMP)
	DEMO_HOME=$${DEMO_HOME:-$(CURDIR)/.plait-demo-server} $(BIN)/python examples/server_demo.py

# the dashboard (and the API) over the demo's store: open http://127.0.0.1:4300/ (Ctrl-C stops it)
dashboard: $(STAMP)
	PLAIT_HOME=$${PLAIT_HOME:-$(CURDIR)/.plait-demo} $(BIN)/plait server start

# the core engine alone: retries, caching, map and a failure
demo-basics: $(STAMP)
	PLAIT_HOME=$${PLAIT_HOME:-$(CURDIR)/.plait-demo} $(BIN)/python examples/demo.py
	PLAIT_HOME=$${PLAIT_HOME:-$(CURDIR)/.plait-demo} $(BIN)/plait flow-run ls --limit 10

# test files run in parallel (one worker per core; a file's tests stay on one worker), then
# the few tests that need the machine to themselves (marked serial), alone
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS)

# ruff over the whole tree, mypy (strict) over the core; both configured in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# the speed issue's table beside plain-Python baselines; exits 1 when a target is missed by
# more than 20%. PROFILE=1 also writes cProfile output per case to bench/profiles/;
# BENCH_ARGS=--quick for a short run
bench: $(STAMP)
	$(BIN)/python bench/run.py $(if $(PROFILE),--profile bench/profiles) $(BENCH_ARGS)

# sdists and wheels of plait and every collection, with index.json (file names, sha256):
# `plait collection install NAME --find-links wheelhouse` installs from it, offline
wheelhouse: $(STAMP)
	$(BIN)/plait collection build --out $${WHEELHOUSE:-$(CURDIR)/wheelhouse}

clean:
	rm -rf $(VENV) .plait-demo .plait-demo-server wheelhouse
