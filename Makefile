# paysys developer entry points. `make run` and `make test` work on a fresh clone:
# they create .venv, install the pinned requirements, and start an embedded PostgreSQL
# and Redis (scripts/services.py) unless DATABASE_URL / CELERY_BROKER_URL are set.

PYTHON ?= python3
# Resolved before .venv/bin goes first on PATH: the venv is made from the system Python.
HOST_PYTHON := $(shell command -v $(PYTHON) 2>/dev/null || echo $(PYTHON))
VENV := .venv
VPY := $(VENV)/bin/python
PYTEST_ARGS ?=

# Child processes (gunicorn, celery, lint-imports, ...) resolve from the venv first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv run test lint clean

venv: $(VENV)/.installed

$(VPY):
	$(HOST_PYTHON) -m venv $(VENV)

# Re-installs only when a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt | $(VPY)
	$(VPY) -m pip install -r requirements-dev.txt
	touch $@

run: venv
	$(VPY) scripts/services.py -- $(VPY) scripts/run.py

lint: venv
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .

test: venv
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VPY) scripts/services.py -- $(VPY) -m pytest $(PYTEST_ARGS)

# Stops a leftover embedded PostgreSQL first: deleting a running server's data is not safe.
clean:
	if [ -x $(VPY) ]; then $(VPY) scripts/services.py --stop; fi
	rm -rf var/

# Benchmarks (docs/benchmarks.md): POST /v1/charges against a signed baseline endpoint.
.PHONY: bench bench-api
bench: bench-api

bench-api: venv
	$(VPY) scripts/services.py -- $(VPY) bench/api_charge.py

# Webhook delivery throughput (docs/bench-webhooks.md): Celery worker vs one process of bare signed POSTs.
.PHONY: bench-webhooks
bench-webhooks: venv
	$(VPY) scripts/services.py -- $(VPY) bench/webhooks.py
