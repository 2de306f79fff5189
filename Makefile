# Two commands on a fresh machine: `make run` (the demo site) and `make test` (the suite).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000
SIZE ?= medium
PYTEST_ARGS ?=

.PHONY: run test test-fast bench quality worker beat migrate seed retrain clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the pins change.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/activate
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

# The demo site on SQLite, with eager tasks: no server needed.
run: export DEBUG ?= 1
run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --if-empty
	$(PY) manage.py retrain_recommendations --sync --if-none-live
	@echo "Demo logins: customer demo / demo-reader, staff staff / staff-admin  ->  http://$(HOST):$(PORT)/"
	$(PY) manage.py runserver $(HOST):$(PORT)

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

# SIZE=xlarge needs DATABASE_URL (PostgreSQL) and REDIS_URL; EPOCHS=N cuts its fit (the shards do not depend on it).
bench: $(VENV)/.installed
	$(PY) bench/run.py --size $(SIZE) $(if $(EPOCHS),--epochs $(EPOCHS))

# Real book ratings (../shared/data/goodbooks), warm and cold, scored by the shared score.py.
QUALITY_DATA ?= ../shared/data/goodbooks
QUALITY_SCORER ?= ../shared/quality/score.py
quality: $(VENV)/.installed
	$(PY) bench/quality.py --data $(QUALITY_DATA) --scorer $(QUALITY_SCORER) --out docs/QUALITY.md

worker: $(VENV)/.installed
	$(BIN)/celery -A bookstore worker -Q celery,training,scoring --loglevel=INFO --concurrency=1

beat: $(VENV)/.installed
	$(BIN)/celery -A bookstore beat --loglevel=INFO

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm staticfiles media bench/out
