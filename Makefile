# Quick start: `make demo` and `make test`, each doing its own set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-mysql demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

# The MariaDB pass of the suite needs mysqlclient, which compiles against
# libmariadb: only `make test` asks for it, `make demo` needs no compiler.
install-mysql: $(VENV)/.installed-mysql

$(VENV)/.installed-mysql: $(VENV)/.installed
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,mysql]" \
		|| { echo "mysqlclient could not be built: apt-get install libmariadb-dev pkg-config gcc (Debian), then make test again" >&2; exit 1; }
	touch $@

demo: install
	$(BIN)/inv demo

# The suite on the three databases, then its in-process part on Django 4.2.
test: install-mysql
	$(BIN)/inv test
	$(BIN)/inv test-django

lint: install
	$(BIN)/inv lint

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
