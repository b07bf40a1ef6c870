# One command runs the system (make run), one runs the tests (make test); both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .cache/uv
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help sync run test test-unit lint format typecheck kafka-up kafka-down pg-up pg-down bench schemas clean

help:
	@echo "make run         start the three services on the embedded default (SQLite + embedded event log)"
	@echo "make test        run every test (starts PostgreSQL and Kafka when they can be, skips them otherwise)"
	@echo "make test-unit   unit tests only: nothing to start"
	@echo "make lint        ruff and mypy"
	@echo "make kafka-up / kafka-down, pg-up / pg-down   the real broker and database for integration tests"
	@echo "make bench       the benchmarks in bench/"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml shared/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --all-packages --quiet
	@touch $@

sync: $(VENV)/.synced

run: sync
	$(BIN)/python scripts/run.py

test: sync
	scripts/test.sh

test-unit: sync
	$(BIN)/pytest -m "not postgres and not kafka" -q

lint: sync
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared/src services/case-api/src services/logistics-watcher/src services/payout-worker/src

format: sync
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: sync
	$(BIN)/mypy shared/src services/case-api/src services/logistics-watcher/src services/payout-worker/src

kafka-up: sync  # the ACLs are made with the project's Python
	infra/kafka/kafka.sh up

kafka-down:
	infra/kafka/kafka.sh down

pg-up:
	infra/postgres/pg.sh up

pg-down:
	infra/postgres/pg.sh down

bench: sync
	scripts/bench.sh

schemas: sync
	$(BIN)/python scripts/export_schemas.py

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
