# `make serve` and `make test` each create or refresh .venv from pyproject.toml first:
# `serve` installs the runtime only, `test` adds the dev extras (linters, pytest, Playwright).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
ARGS ?=

.PHONY: serve test lint venv tools bench clean fuzz

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

# The browser tests drive Debian's Chromium and the bench smoke test drives wrk: install each
# when it is missing and apt-get can (a test that needs a missing one skips and says why).
tools:
	@missing=""; for tool in chromium wrk; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	      || echo "Could not install$$missing: the tests that need it will be skipped"; \
	  else echo "Not installed:$$missing (apt-get not usable): the tests that need it will be skipped"; fi; fi

# The suite on every core (pytest-xdist): about half the time on two. `pytest` alone runs it in
# one process, as is handier for a single test.
test: lint tools
	$(BIN)/python -m pytest -n auto

# Load figures: the mock on each store beside Prism and a bare ASGI app (bench/RESULTS.md).
# wrk comes from Debian when missing; Prism from bench/package-lock.json (npm ci, in run.py).
bench: $(DEV) tools
	$(BIN)/python bench/run.py $(ARGS)

# Not part of `make test`: minutes of negative fuzzing against a fresh mock (README, "Fuzzing the mock").
fuzz: $(RUNTIME)
	$(BIN)/python tools/fuzz.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
