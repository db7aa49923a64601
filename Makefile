# The two commands a newcomer needs: `make demo` (the local fleet) and `make test` (the whole suite).
PYTHON ?= python3
# Test files run in parallel (pytest-xdist), one worker per core; a file stays on one worker (module fixtures).
TEST_WORKERS ?= auto
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint install mosquitto postgres chromium clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

mosquitto:
	@bash scripts/ensure-mosquitto.sh

# The store tests start their own PostgreSQL cluster (tests/fixtures/postgres.py): only the binaries are needed.
postgres:
	@bash scripts/ensure-postgres.sh

# The console's browser tests drive Debian's Chromium (Playwright without a browser download)
chromium:
	@bash scripts/ensure-chromium.sh

# `make demo DEMO_ARGS=--keep` leaves the fleet and the hub's console running after the story (Ctrl-C stops it)
DEMO_ARGS ?=
demo: install mosquitto
	$(BIN)/fleetloop demo $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check agent hub shared infra models sim fleetloop tests bench
	$(BIN)/mypy agent hub shared infra

test: install mosquitto postgres chromium lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
