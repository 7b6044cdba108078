# Two commands do all the set-up: `make run` serves Courier, `make test` checks it.
PYTHON ?= python3
VERSION_OF = -c 'import sys; print("%d.%d" % sys.version_info[:2])'
PYVER  := $(shell $(PYTHON) $(VERSION_OF))
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(PYVER)

.PHONY: run test lint typecheck pytest bench venv broker-installed clean

# A venv of another Python (an older checkout's, or PYTHON changed) is made anew.
$(STAMP): pyproject.toml
	@if [ -x $(BIN)/python ] && [ "$$($(BIN)/python $(VERSION_OF))" != "$(PYVER)" ]; then \
		echo "$(VENV) is of another Python: making it anew with $(PYTHON) ($(PYVER))"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

broker-installed:
	@scripts/ensure-mosquitto.sh

run: venv broker-installed
	$(BIN)/python scripts/start-broker.py
	set -a; . ./.run/courier.env; set +a; exec $(BIN)/courier serve

test: venv broker-installed lint typecheck pytest

lint: venv
	$(BIN)/ruff check courier tests benchmarks scripts
	$(BIN)/ruff format --check courier tests benchmarks scripts

typecheck: venv
	$(BIN)/mypy courier tests benchmarks scripts

pytest: venv broker-installed
	$(BIN)/pytest -q

bench: venv broker-installed
	$(BIN)/courier bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .run
