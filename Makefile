# `make serve` and `make test` each create or refresh .venv from pyproject.toml first:
# `serve` installs the runtime only, `test` adds the dev extras (linters, pytest, Playwright).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
ARGS ?=

.PHONY: serve test lint venv chromium bench clean fuzz

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(RUNTIME)

$(DEV): $(RUNTIME)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(DEV)

venv: $(DEV)

serve: $(RUNTIME)
	$(BIN)/flashback-contract serve $(ARGS)

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src

# The browser test drives Debian's Chromium; install it when it is missing and apt-get can.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	      || echo "Chromium could not be installed: the browser test will be skipped"; \
	  else echo "Chromium is not installed and apt-get is not usable: the browser test will be skipped"; fi; }

test: lint chromium
	$(BIN)/python -m pytest

# Load figures: the mock on each store beside Prism and a bare ASGI app (bench/RESULTS.md).
# wrk comes from Debian when missing; Prism from bench/package-lock.json (npm ci, in run.py).
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else echo "wrk is needed: apt-get install wrk"; exit 1; fi; }
	$(BIN)/python bench/run.py $(ARGS)

# Not part of `make test`: minutes of negative fuzzing against a fresh mock (README, "Fuzzing the mock").
fuzz: $(RUNTIME)
	$(BIN)/python tools/fuzz.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
