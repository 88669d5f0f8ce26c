# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint format check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# `make demo PORT=8001` when port 8000 is taken.
PORT ?= 8000
demo: $(STAMP)
	PORT=$(PORT) $(PY) -m clinic.devservices demo $(ARGS)

# One pytest worker per core (pytest-xdist); each worker gets its own test database. `load`
# hands each worker its tests in collection order, so the live-server tests (which empty the
# database when they finish) still run after the others, as pytest-django orders them.
test: $(STAMP)
	$(PY) -m clinic.devservices test -n auto --dist load $(ARGS)

# Timings on synthetic data as the clinic grows; prints ratios, never fails on speed.
bench: $(STAMP)
	$(PY) -m clinic.devservices test -m bench -s -q $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

check: $(STAMP)
	DJANGO_SETTINGS_MODULE=clinic.settings.production DJANGO_SECRET_KEY=check-only-$$(date +%s)-0123456789abcdefghijklmnopqrstuvwxyz \
	DATABASE_URL=postgres://localhost/unused $(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) .devdata staticfiles
