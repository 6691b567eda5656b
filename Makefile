# The two commands of the Quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
TEST_WORKERS ?= auto
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo demo-reset test lint format clean bench-ingest bench-links bench-metrics bench-portal bench-demo bench-sync

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# The embedded mode: SQLite under var/, tasks in-process, debug on for local use only. The first run
# generates and loads the demo world; later runs reload it (var/demo/); demo-reset starts afresh.
DEMO_SIZE ?= default
demo: install
	VSM_DEBUG=1 $(BIN)/python manage.py demo --host $(HOST) --port $(PORT) --size $(DEMO_SIZE)

demo-reset: install
	rm -rf var/demo var/vsm.sqlite3 var/vsm.sqlite3-wal var/vsm.sqlite3-shm
	$(MAKE) demo

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

# Benchmarks print figures; they use their own PostgreSQL database (vsm_bench) on the server of
# DATABASE_URL (default: the local one).
BENCH_ISSUES ?= 50000
bench-ingest: install
	$(BIN)/python -m tests.bench.ingest --issues $(BENCH_ISSUES)

bench-links: install
	$(BIN)/python -m tests.bench.links

bench-metrics: install
	$(BIN)/python -m tests.bench.metrics

bench-demo: install
	$(BIN)/python -m tests.bench.demo

# A real Celery worker on Redis (VSM_CELERY_BROKER_URL, default the local one) against the fakes.
bench-sync: install
	$(BIN)/python -m tests.bench.sync $(BENCH_SYNC_ARGS)

# Serves the app with gunicorn on the bench-metrics dataset; BENCH_PORTAL_ARGS=--seconds 10 for a quick run.
bench-portal: install
	$(BIN)/python -m tests.bench.portal $(BENCH_PORTAL_ARGS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
