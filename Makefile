# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-full lint demo bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

# the fast suite (tests marked slow deselected); test-full adds the slow ones (what CI runs)
test: lint
	$(PY) -m pytest -q -m "not slow"

test-full: test
	$(PY) -m pytest -q -m slow

demo: install
	$(PY) -m demo

clean:
	rm -rf $(VENV) .pytest_cache
