# One command each: `make demo` runs the demo, `make test` runs the tests (lint included).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench lint format clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.installed node_modules/.installed
	$(PY) -m shared demo

test: $(VENV)/.installed node_modules/.installed
	bash tests/ensure_chromium.sh
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

bench: $(VENV)/.installed node_modules/.installed
	$(PY) bench/ingest.py

format: $(VENV)/.installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis
