# AgentKeep developer entry points. `make run` and `make test` work on a fresh machine
# with python3 (>= 3.11) and make; everything else is installed into .venv from the lock.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: run test lint format typecheck pytest install lock migrate bench clean sso-provider

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# Dependencies are compiled to bytecode as they are installed: where PYTHONDONTWRITEBYTECODE
# is set, every interpreter (each CLI call, server and test worker) would otherwise compile
# its imports from source again, which doubles the start of `agentkeep` (3 s of CPU, not 1.4 s).
$(STAMP): $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c requirements.lock -e ".[dev,otel]"
	@touch $(STAMP)

install: $(STAMP)

# A .env with a freshly generated secret, readable by its owner only; never overwritten.
.env: | $(STAMP)
	@umask 077 && { \
	  echo "# Written by 'make run'. See .env.example for every setting."; \
	  echo "JWT_SECRET=$$($(BIN)/agentkeep gen-secret)"; \
	} > .env
	@chmod 600 .env
	@echo "wrote .env with a new JWT_SECRET"

migrate: $(STAMP) .env
	$(BIN)/agentkeep migrate

run: migrate
	HOST=$(HOST) PORT=$(PORT) $(BIN)/agentkeep serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs in PYTEST_WORKERS parallel processes (pytest-xdist). Most tests wait on
# servers, subprocesses and databases rather than compute, so more workers than cores pay
# off; `worksteal` lets an idle worker take queued tests from a busy one. PYTEST_WORKERS=0
# runs everything in this one process. A plain `.venv/bin/pytest FILE` stays serial.
PYTEST_WORKERS ?= 3

pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test: lint typecheck pytest

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-pin every dependency (run after editing pyproject.toml, commit the result).
lock: $(BIN)/python
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra otel --python-version 3.11 --quiet -o requirements.lock

# The real OpenID provider the SSO tests sign in through (tests/sso/openid_provider): the
# npm package pinned by its package-lock, installed into that folder only.
SSO_PROVIDER := tests/sso/openid_provider
sso-provider: $(SSO_PROVIDER)/node_modules/.package-lock.json

$(SSO_PROVIDER)/node_modules/.package-lock.json: $(SSO_PROVIDER)/package.json $(SSO_PROVIDER)/package-lock.json
	cd $(SSO_PROVIDER) && npm ci --no-audit --no-fund --loglevel=error

# Each benchmark also takes --postgres / --redis URLs; see bench/README.md.
bench: $(STAMP)
	$(BIN)/python -m bench.health_load
	$(BIN)/python bench/auth_login.py
	$(BIN)/python bench/ratelimit_overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
