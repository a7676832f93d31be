# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
STACK := deploy/local/stack.sh
PY := .venv/bin/python
# The ports of the local stack; set any of them to run a second clone beside this one.
export MAMS_DB_PORT ?= 54329
export MAMS_REDIS_PORT ?= 63790
export MAMS_LLM_PORT ?= 18080
export MAMS_REDIS_URL ?= redis://127.0.0.1:$(MAMS_REDIS_PORT)/0
export MAMS_LOCAL_LLM_URL ?= http://127.0.0.1:$(MAMS_LLM_PORT)/v1

.PHONY: install services demo test fuzz up down purge bench bench-dashboard load soak lint

# The Python extras to install: `make up MAMS_EXTRAS=dev` skips the local model (no llama.cpp compile) for
# a stack that uses OpenRouter or the baseline strategies only.
MAMS_EXTRAS ?= local,dev

install:
	@$(STACK) setup $(MAMS_EXTRAS)

services: install
	@$(STACK) services

demo: services
	@$(STACK) llm
	@$(PY) manage.py migrate --noinput -v0
	@$(STACK) worker w1
	@$(PY) manage.py demo

# The end-to-end page test drives Debian's chromium: the setup step installs it for `make test`.
test: export MAMS_WITH_BROWSER = 1
test: services
	@$(STACK) llm
	@mkdir -p test-output
	$(PY) -m pytest $(PYTEST_ARGS)

# Schemathesis against the published OpenAPI schema, 100 cases per operation (the smoke test in the suite
# runs 25; ~6 min): no 5xx, and no request may leave partial rows. MAMS_FUZZ_EXAMPLES=500 make fuzz for more.
fuzz: services
	@mkdir -p test-output
	MAMS_FUZZ_EXAMPLES=$${MAMS_FUZZ_EXAMPLES:-100} $(PY) -m pytest tests/api/test_fuzz_deep.py -q $(PYTEST_ARGS)

up: services
	@deploy/local/up.sh

down:
	@$(STACK) down

# `down`, then delete this clone's database cluster (kept outside the clone, see deploy/local/stack.sh) and .local.
purge:
	@$(STACK) purge

bench: services
	$(PY) perf/overhead.py

bench-dashboard: services
	$(PY) perf/dashboard.py

# Throughput with 1, 2 and 4 worker processes against a hard provider limit (a 300-run batch, and a
# 60-run one on one worker), the asyncio baseline, and worker memory over a 2,000-run batch (~13 min on 2 cores).
load: services
	$(PY) perf/load.py

# One 500-run batch on two supervised workers while Redis restarts 20 times, Postgres 10 times and a
# worker is SIGKILLed 10 times, on a Postgres and Redis of its own; prints completed/duplicates/missing/stuck last.
soak: services
	$(PY) perf/soak.py

# Ruff, the architecture contracts of pyproject.toml's [tool.importlinter] (no import cycles; layers
# import downward; negotiation never imports analytics; the engine and the metrics stay pure), and mypy
# with the django and DRF stubs (zero errors).
lint: install
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/mypy
