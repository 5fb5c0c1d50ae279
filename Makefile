# The README's commands. Each target sets up .venv with the pinned dependencies on its own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export MLOPS_HOME ?= $(CURDIR)/.mlops
export DAGSTER_HOME ?= $(MLOPS_HOME)/dagster_home

.PHONY: install demo test e2e lint format dev serve reports bench clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## make demo: train, backfill daily monitoring, alert, retrain, register; then a summary
demo: $(STAMP)
	$(BIN)/python -m mlops_assets.demo

## make test: the whole suite (real data from ../shared/data/nyc-tlc when present)
test: $(STAMP)
	$(BIN)/python -m pytest

## make e2e: only the end-to-end tests (dagster dev, daemon, gunicorn, browser); part of `make test`
e2e: $(STAMP)
	$(BIN)/python -m pytest -m e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make dev: the Dagster UI + daemon on http://localhost:3000 (runs kept in $(DAGSTER_HOME), whose
## dagster.yaml is mlops_assets/local_instance.yaml: the run queue's limits). `dagster dev` runs
## from DAGSTER_HOME itself (physical path): started here, it would warn on every start that the
## top-level dagster.yaml (the deployed instance's) is not the one it uses (dagster/_cli/dev.py).
## So relative TRIP_DATA_DIR and MODEL_SPECS_DIR are made absolute first.
dev: export TRIP_DATA_DIR := $(if $(TRIP_DATA_DIR),$(abspath $(TRIP_DATA_DIR)))
dev: export MODEL_SPECS_DIR := $(if $(MODEL_SPECS_DIR),$(abspath $(MODEL_SPECS_DIR)))
dev: $(STAMP)
	@$(BIN)/python -m mlops_assets.local_instance "$(DAGSTER_HOME)"
	cd -P "$(DAGSTER_HOME)" && DAGSTER_HOME="$$(pwd -P)" exec "$(abspath $(BIN))/dagster" dev -w "$(CURDIR)/workspace.yaml"

## make serve: the prediction service on http://127.0.0.1:$${SERVING_PORT:-8000} (gunicorn)
serve: $(STAMP)
	$(BIN)/gunicorn -c serving/gunicorn.conf.py

## make reports: MLOPS_HOME/reports (Evidently reports, history chart) on http://127.0.0.1:8001;
## run `make dev` with REPORTS_URL=http://127.0.0.1:8001 so the metadata links open them
reports: $(STAMP)
	@mkdir -p $(MLOPS_HOME)/reports
	$(BIN)/python -m http.server 8001 --bind 127.0.0.1 --directory $(MLOPS_HOME)/reports

## make bench: backfill, scale, sensor and serving benchmarks, then one table (serving needs wrk, nginx)
bench: $(STAMP)
	@command -v wrk >/dev/null && { command -v nginx >/dev/null || test -x /usr/sbin/nginx; } || echo "note: bench/serving.py needs wrk and nginx (apt-get install -y wrk nginx); it will be skipped" >&2
	$(BIN)/python bench/all.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
