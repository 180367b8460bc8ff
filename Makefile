# One command each: `make demo` runs the demo, `make test` runs the tests (lint included).
# The newest Python that Azure runs the app on (3.12, see infra/) when installed (also a pyenv
# install that is not the selected version), else 3.11 (still supported for development).
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p || echo $$p; } && break; done)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-later unit typecheck bench lint format clean azurite azurite-stop samples

PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# A new Python (say 3.11 -> 3.12) means a new venv.
$(VENV)/.python-$(PYVER):
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	touch $@

$(VENV)/.installed: requirements.txt requirements-dev.txt $(VENV)/.python-$(PYVER)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.installed node_modules/.installed
	$(PY) -m devtools demo

# A local Azurite for the command line and `func start`: default ports, data in .azurite/.
azurite: $(VENV)/.installed node_modules/.installed
	$(PY) -m devtools azurite start

azurite-stop: $(VENV)/.installed
	$(PY) -m devtools azurite stop

# The sample logs, in their blob layout, under ./logs (for `python -m shared ingest logs`).
samples: $(VENV)/.installed
	$(PY) -m devtools samples logs

test: $(VENV)/.installed node_modules/.installed
	bash tests/ensure_chromium.sh
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

# The inner loop: pure tests and the runners on in-memory storage (no npm, no Azurite, no
# Chromium), property tests scaled down, on every core (pytest-xdist).
unit: $(VENV)/.installed
	RELIABILITY_BUDGET_SCALE=0.03 $(PY) -m pytest -q -n auto -m "not azurite and not slow"

typecheck: $(VENV)/.installed
	$(PY) -m mypy

bench: $(VENV)/.installed node_modules/.installed
	$(PY) bench/ingest.py

format: $(VENV)/.installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis .azurite logs

# The whole suite as if today were 400 days later (no answer may depend on the calendar).
test-later: $(VENV)/.installed node_modules/.installed
	bash tests/ensure_chromium.sh
	TEST_DAYS_AHEAD=400 $(PY) -m pytest
