# The two commands of the README: `make run` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-cluster lint venv conformance certlogic-conformance chromium

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/placegate serve --demo

# The console's browser tests (tests/console/) drive Debian's Chromium; as root, a missing one is installed from
# Debian's packages first. Otherwise (or if that fails) they are skipped, and this says so before the run.
CHROMIUM ?= /usr/bin/chromium

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing chromium from Debian's packages for the console's browser tests"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
				>/dev/null 2>&1 || true; \
		fi; \
		if [ ! -x "$(CHROMIUM)" ]; then \
			echo "NOTE: no Chromium at $(CHROMIUM): the console's browser tests (tests/console/) will be SKIPPED"; \
		fi; \
	fi
	@# A Chinese font, so the zh pages and the language switch render as text in screenshots, not as boxes.
	@if [ -x "$(CHROMIUM)" ] && [ -z "$$(fc-list :lang=zh 2>/dev/null)" ] && [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-zenhei >/dev/null 2>&1 || true; \
	fi

# The whole suite again on a private Redis Cluster (3 primaries, 3 replicas) the session starts itself.
test-cluster: $(STAMP) chromium
	PLACEGATE_TEST_STORE=cluster $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check crypto policy gateway bench tests
	$(BIN)/mypy

# CONFORMANCE: a directory holding the runner dcc_conformance.py and dcc-testdata/ (docs/dcc.md); not in this repository.
conformance: $(STAMP)
	@test -n "$(CONFORMANCE)" || { echo "usage: make conformance CONFORMANCE=DIR (docs/dcc.md)" >&2; exit 2; }
	$(BIN)/python $(CONFORMANCE)/dcc_conformance.py $(CONFORMANCE)/dcc-testdata -- \
		$(BIN)/placegate verify --trust-cert {cert_file} --at {clock} --json {code_file}

# The CertLogic evaluator on the public CertLogic and business-rule test files under CONFORMANCE (docs/dcc.md).
certlogic-conformance: $(STAMP)
	@test -n "$(CONFORMANCE)" || { echo "usage: make certlogic-conformance CONFORMANCE=DIR (docs/dcc.md)" >&2; exit 2; }
	$(BIN)/placegate rules score $(CONFORMANCE)/certlogic/specification/testSuite $(CONFORMANCE)/dcc-rules-testdata
