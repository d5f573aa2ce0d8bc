# Ferry: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ferry-installed
HOST ?= 127.0.0.1
PORT ?= 8000
# When DATABASE_URL points at PostgreSQL, `make test` also runs the fast tests on SQLite.
SQLITE_SMOKE ?= 1

.PHONY: run test setup system-deps system-deps-test venv lint test-python lab-up lab-down bench bench-load openapi migrate clean

# The demo inventory is libvirt's test driver reading inventory/demo/nodes: only a demo
# server turns it on (FERRY_DEMO; see docs/security.md).
run: export FERRY_DEMO = true
run: system-deps venv
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py demo_setup
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

test: system-deps-test venv lint test-python

system-deps:
	@scripts/system-deps.sh

system-deps-test:
	@scripts/system-deps.sh --test

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

test-python:
	$(VENV)/bin/pytest
	@if [ "$(SQLITE_SMOKE)" = "1" ] && echo "$$DATABASE_URL" | grep -q '^postgres'; then \
	  echo "== SQLite smoke run (the embedded default) =="; \
	  env -u DATABASE_URL -u REDIS_URL $(VENV)/bin/pytest -q -m "not lab and not browser and not postgres" tests/inventory tests/dashboard; \
	fi

lab-up: venv
	@lab/install-deps.sh
	$(PYTHON) lab/labctl.py up

lab-down:
	$(PYTHON) lab/labctl.py down

bench: system-deps-test venv
	$(PY) bench/run.py

bench-load: system-deps-test venv
	$(PY) bench/run.py --only L1 --merge

# Production migrations on PostgreSQL: run as FERRY_OWNER_DATABASE_URL's role, then grant the
# runtime role of DATABASE_URL its rights (no UPDATE/DELETE/TRUNCATE on the audit trail).
migrate: venv
	$(PY) manage.py ferry_migrate

# Regenerate the committed API contract after an intended API change (a test compares them).
openapi: venv
	$(PY) manage.py spectacular --file docs/openapi.yaml

clean:
	rm -rf $(VENV) var
