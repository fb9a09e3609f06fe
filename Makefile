# plunk_sql developer commands. `make demo` and `make test` are the two that matter.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test lint format demo bench bench-quick clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check plunk_sql tests
	$(VENV)/bin/ruff format --check plunk_sql tests
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check plunk_sql tests

format: $(STAMP)
	$(VENV)/bin/ruff format plunk_sql tests
	$(VENV)/bin/ruff check --fix plunk_sql tests

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m plunk_sql.cli bench $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m plunk_sql.cli bench --quick --out build/bench-quick $(BENCH_ARGS)

demo: $(STAMP)
	$(PY) -m plunk_sql.cli demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
