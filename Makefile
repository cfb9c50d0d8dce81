# Everything runs from a project-local virtualenv built from constraints.txt (exact, tested versions).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# make demo needs only the runtime dependencies (no test tools: moto, DuckDB, pandas, Playwright...); the dev
# install (STAMP) includes them, so a .venv built for make test serves the demo without another install.
RUNTIME_STAMP := $(VENV)/.runtime-stamp
export V6_HOME ?= $(CURDIR)/.v6
export DAGSTER_HOME ?= $(V6_HOME)/dagster_home
# Instance config copied into DAGSTER_HOME: `make run DAGSTER_YAML=deploy/dagster.postgres.yaml` for PostgreSQL.
DAGSTER_YAML ?= dagster.yaml

.PHONY: help system-deps install install-runtime lint format test test-all test-fast demo run sim bench bench-quick chaos clean

help:
	@echo "make demo   - simulator + seeded history + the Dagster stack on http://127.0.0.1:3000"
	@echo "make test   - lint + the whole test suite (unit, integration, end-to-end)"
	@echo "make run    - the Dagster stack (supervised code server, webserver, daemon) against a real IB Gateway/TWS (V6_IB_* env vars)"
	@echo "make lint | format | bench | bench-quick | chaos | clean"

# pip byte-compiles one file after another; compileall does the same work on every core (make demo from a fresh clone:
# 10 s less of the install). Byte-compiling up front, not at first import, matters: the stack's three processes start
# at once and would each compile the same modules.
COMPILE := $(BIN)/python -m compileall -qq -j 0 $(VENV)/lib

# Rebuilt when missing or when pyproject.toml / constraints.txt change (stale).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(COMPILE)
	touch $@ $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile --disable-pip-version-check -c constraints.txt -e .
	$(COMPILE)
	touch $@

install: $(STAMP)

install-runtime: $(RUNTIME_STAMP)

# Debian packages for the e2e and scale-out tests (chromium, postgresql): installed when missing (as root), else
# make stops at once with the one command to run. make test runs it itself.
system-deps:
	bash .ci/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy v6_assets
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Tests run in 4 pytest-xdist workers (most wait on simulated time or child processes: a whole run used ~45% of the
# 2 cores with 3 workers; 4 took 497 s against 529-544 s);
# --dist loadscope keeps each module on one worker, so a module's shared stack (one dagster dev, one simulated run)
# starts once. Tests marked slow (a second and third dagster dev) run in make test-all, make chaos, make bench.
PYTEST_WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope

test: system-deps lint
	$(PYTEST) -m "not slow" --durations=15

test-all: system-deps lint
	$(PYTEST)

# No e2e, no scale-out: without a dagster dev running, a 4th worker is faster (152 s vs 195 s measured).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 4 --dist loadscope -m "not e2e and not slow and not scaleout"

$(DAGSTER_HOME)/dagster.yaml: $(DAGSTER_YAML) FORCE
	mkdir -p $(DAGSTER_HOME)
	cp $(DAGSTER_YAML) $@

FORCE:

sim: $(RUNTIME_STAMP)
	$(BIN)/v6-gateway-sim --scenario demo

# make demo SCENARIO=path/to/scenario.yaml: the same demo over your own scenario (format: reference.yaml).
demo: $(RUNTIME_STAMP)
	$(BIN)/python -m v6_assets.demo $(if $(SCENARIO),--scenario $(SCENARIO))

run: $(RUNTIME_STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m v6_assets.devserver --port 3000 -w workspace.yaml

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run_all --quick

chaos: $(STAMP)
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) .v6 .mypy_cache .ruff_cache .pytest_cache
