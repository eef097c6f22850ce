# Two commands on a fresh machine with Python 3.11+ and make:
#   make run        set up and run the main job on embedded defaults
#   make test       set up and run lint, type checks and every test tier
# And:
#   make test-fast  the quick tier only: lint, type checks, tests not marked slow or cluster
#   make test-deps  (root) install what the cluster and sandbox tests need:
#                   scripts/ci-install.sh. Without it those tests skip, saying why
#                   (under CI=true they fail instead).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-deps lint typecheck setup bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/suanli up --demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

test-fast: lint typecheck
	$(BIN)/pytest -q -m "not slow and not cluster"

test-deps: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/ci-install.sh

bench: $(STAMP)
	$(BIN)/suanli bench clearing --size medium

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
