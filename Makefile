# The two commands: `make demo` and `make test`. See README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The files .venv is installed from (requirements-fuzz.txt is .venv-fuzz's, see `fuzz`).
REQ_STAMP := $(VENV)/.installed-$(shell cat requirements-demo.txt requirements-dev.txt requirements.txt constraints.txt 2>/dev/null | sha1sum | cut -c1-12)

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test bench lint install services browser clean-data fuzz

$(REQ_STAMP): requirements.txt requirements-dev.txt requirements-demo.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "error: cannot create a virtualenv with $(PYTHON)"; exit 1; }
	$(PIP) install -q -r requirements-dev.txt -r requirements-demo.txt -c constraints.txt
	@rm -f $(VENV)/.installed-* && touch $@

install: $(REQ_STAMP)

demo: $(REQ_STAMP)
	$(PY) scripts/demo.py

services:
	@scripts/ensure_services.sh

browser:
	@scripts/ensure_chromium.sh

# Tests: real PostgreSQL and Redis on 127.0.0.1 (started if down), Debian chromium for browser tests.
TEST_ENV := SECRET_KEY=test-secret-key DEBUG=0 LOG_FORMAT=text \
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/cdp} \
	REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}

test: $(REQ_STAMP) services browser
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

bench: $(REQ_STAMP) services
	@scripts/ensure_wrk.sh
	SECRET_KEY=bench DEBUG=0 LOG_FORMAT=text CDP_STITCH_AFTER_INGEST=0 \
	DATABASE_URL=$${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/cdp_bench} \
	$(PY) bench/run.py

# Optional, not part of `make test`: fuzz a running server's API against its OpenAPI schema (scripts/fuzz_api.sh).
# schemathesis lives in its own virtualenv, .venv-fuzz, pinned by requirements-fuzz.txt (not a project dependency).
fuzz:
	@test -x .venv-fuzz/bin/schemathesis || { $(PYTHON) -m venv .venv-fuzz && .venv-fuzz/bin/pip install -q -r requirements-fuzz.txt; }
	scripts/fuzz_api.sh

lint: $(REQ_STAMP)
	$(VENV)/bin/ruff check .

clean-data:
	rm -rf .data
