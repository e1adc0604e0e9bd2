# Quick start: `make demo` and `make test`, each doing its own set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

demo: install
	$(BIN)/inv demo

test: install
	$(BIN)/inv test

lint: install
	$(BIN)/inv lint

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
