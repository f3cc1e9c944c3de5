# Two commands matter: `make run` (demo on SQLite at http://localhost:8080) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DB    ?= sqlite:///var/ticketing.db
DEV_TOKEN  ?= dev-admin-token
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install run test test-python test-newman stress bench lock clean

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## .venv with the service and its `ticketing` CLI

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

run: install  ## migrate + demo data + serve on http://localhost:8080
	mkdir -p var
	TICKETING_DATABASE_URL=$(DEMO_DB) $(BIN)/ticketing db upgrade
	TICKETING_DATABASE_URL=$(DEMO_DB) $(BIN)/ticketing demo
	@echo "operator token (for /admin): $(DEV_TOKEN)   customer: user123   staff: staff123"
	TICKETING_DATABASE_URL=$(DEMO_DB) TICKETING_ADMIN_TOKEN=$(DEV_TOKEN) \
	TICKETING_LOG_FORMAT=console $(BIN)/ticketing serve --host 127.0.0.1 --port 8080

test: test-python test-newman  ## everything: SQLite, PostgreSQL, Newman against a live server

test-python: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-newman: install node_modules/.installed
	bash scripts/newman.sh

stress: install  ## long storms, crash loops and many property examples (pytest -m stress)
	$(BIN)/python -m pytest -m stress $(PYTEST_ARGS)

bench: install  ## throughput vs pgbench and a plain sqlite3 loop (BENCH_ARGS=--history | --profile)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lock:  ## re-pin every dependency after changing pyproject.toml
	rm -rf /tmp/ticketing-lock && $(PYTHON) -m venv /tmp/ticketing-lock
	/tmp/ticketing-lock/bin/pip install --quiet -e .
	/tmp/ticketing-lock/bin/pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf $(VENV) node_modules var .pytest_cache
