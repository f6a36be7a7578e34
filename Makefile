# The two commands of the README: `make run` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint venv conformance

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/placegate serve --demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check crypto policy gateway bench tests
	$(BIN)/mypy

conformance: $(STAMP)
	$(BIN)/python ../shared/conformance/dcc_conformance.py ../shared/conformance/dcc-testdata -- \
		$(BIN)/placegate verify --trust-cert {cert_file} --at {clock} --json {code_file}
