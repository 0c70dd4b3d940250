# The README's two commands: `make demo` and `make test`. Both set everything up from scratch.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: setup test demo lint typecheck unit integration bench constraints clean sdk-matrix pipelines-check docs

# Installed stamp files make re-runs fast; they are redone when their inputs change.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.stamp-deps: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $@

node_modules/.stamp-npm: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.stamp-deps node_modules/.stamp-npm

lint: setup
	$(BIN)/ruff check cicd_tools tests benchmarks

typecheck: setup
	$(BIN)/mypy

# The suite runs in parallel (pytest-xdist): each worker starts its own sandbox and Azurite on free ports. It
# mostly waits (sandbox start-ups, propagation windows, ADF polls), so more workers than cores pay off; see the
# measurements in CHANGELOG.md (issue 23). Tests share nothing across workers, so plain `--dist load` suffices.
TEST_WORKERS ?= 4
XDIST := -n $(TEST_WORKERS) --dist load

unit: setup
	$(BIN)/pytest tests/unit -q $(XDIST)

integration: setup
	$(BIN)/pytest tests/integration -q $(XDIST)

# zizmor, check-jsonschema (vendored github-workflows, github-actions, azure-pipelines schemas), actionlint and
# shellcheck on pipelines/ and the root action.yml: each must report nothing (scripts/pipelines_check.py).
pipelines-check: setup
	$(BIN)/python scripts/pipelines_check.py

# The docs site (docs/, mkdocs.yml): a broken link or a missing page fails the build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# The code-asset tests on the oldest azure-ai-ml we support, then the whole suite on the pinned (newest) SDK,
# with the 15 slowest tests and the wall time of the pytest part.
test: setup lint typecheck pipelines-check docs
	bash scripts/test-sdk-matrix.sh oldest
	@start=$$EPOCHREALTIME; $(BIN)/pytest -q $(XDIST) --durations=15; rc=$$?; \
	  awk -v s="$$start" -v e="$$EPOCHREALTIME" -v n="$(TEST_WORKERS)" \
	    'BEGIN { printf "pytest wall time: %.1f s (%s workers)\n", e - s, n }'; exit $$rc

demo: setup
	$(BIN)/python -m cicd_tools.cli.demo

bench: setup
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

sdk-matrix: setup
	bash scripts/test-sdk-matrix.sh

constraints: $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	{ head -n 2 constraints.txt; $(PIP) freeze --all --exclude-editable | grep -viE '^(cicd-tools|pip)=='; } > constraints.new
	mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .sandbox site
