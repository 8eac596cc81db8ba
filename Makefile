# flowsink: the two commands a user needs are `make run` and `make test`; both set up a fresh machine themselves.
SHELL := /bin/bash
PYTHON ?= python3
PYTEST_ARGS ?=
FLOWSINK ?= $(PYTHON) -m flowsink.cli

.PHONY: help setup deps system-deps es-dist kafka-dist run stop test test-fast lint bench fuzz

help:
	@echo "make run       - the whole stack on Docker Compose (engine installed and started if need be; images built"
	@echo "                 here when no registry answers); FLOWSINK_STACK_MODE=local: local processes; make stop ends it"
	@echo "make test      - install what is missing, start Elasticsearch, run the whole suite, stop what it started"
	@echo "make test-fast - unit and decoder tests only: no Elasticsearch, nginx or other server (under 2 minutes)"
	@echo "make bench     - every benchmark; results in bench/RESULTS.md"

setup: deps system-deps es-dist kafka-dist

# Reinstall when anything is missing or when the installed flowsink is another checkout's (a fresh clone).
deps:
	@$(PYTHON) -c "import sys, flowsink, pytest, hypothesis, scapy, schemathesis, grafanalib, confluent_kafka, \
	  maxminddb.extension, pysnmp, mmdb_writer, geolite2; \
	  sys.exit(not flowsink.__file__.startswith('$(CURDIR)/ingest/'))" 2>/dev/null \
	  && flowsink --help >/dev/null 2>&1 || $(PYTHON) -m pip install -q -e '.[test]'
	@# The optional C extension builds in place (gitignored): a fresh clone has none, and an edited .c or .h leaves
	@# a stale one behind, which flowsink.native refuses. Rebuild when it is missing or older than any source.
	@so=$$(ls ingest/flowsink/native/_native.cpython-*.so 2>/dev/null | head -n 1); \
	if [ -z "$$so" ] || [ -n "$$(find ingest/flowsink/native \( -name '*.c' -o -name '*.h' \) -newer $$so)" ]; then \
	  $(PYTHON) setup.py -q build_ext --inplace >/dev/null 2>&1 || echo "C extension not built: using pure Python"; fi

system-deps:
	@bash scripts/install_system_deps.sh

es-dist:
	@bash scripts/elasticsearch.sh fetch >/dev/null

kafka-dist:
	@bash scripts/kafka.sh fetch >/dev/null

run: setup
	@$(FLOWSINK) stack up

stop:
	@$(FLOWSINK) stack down

test: setup
	@$(PYTHON) -m ruff check .
	@$(PYTHON) -m ruff format --check .
	@$(PYTHON) -m pytest $(PYTEST_ARGS)

# The edit-test loop: tests marked neither integration nor slow, so nothing beyond the Python packages is needed.
test-fast: deps
	@$(PYTHON) -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

lint:
	@$(PYTHON) -m ruff check .
	@$(PYTHON) -m ruff format --check .

bench: setup
	@$(PYTHON) bench/run.py

# a million mutated datagrams through every decoder (coverage-guided with atheris when installed); FUZZ_RUNS to change
FUZZ_RUNS ?= 1000000
fuzz: deps
	@$(PYTHON) -c "import atheris" 2>/dev/null || $(PYTHON) -m pip install -q -e '.[fuzz]' || true
	@$(PYTHON) bench/fuzz_decoders.py --runs $(FUZZ_RUNS)
