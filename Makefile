# Two commands for a fresh machine: `make demo` and `make test`.
# Each builds .venv from this repository's pyproject.toml the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/servekit run examples.hello:app

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# About 15 minutes; writes BENCHMARKS.md and benchmarks/results/. Needs wrk for real numbers
# (apt-get install -y wrk); without it a slower Python load generator is used.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	@command -v wrk >/dev/null || echo "bench: wrk not found (apt-get install -y wrk); using the Python load generator"
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
