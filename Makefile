# unconv: two commands for a new user.
#   make serve   create the environment, train missing default checkpoints and the cnn's
#                feature atlas, start the service
#   make test    lint and run the whole test suite
#   make stress  fuzz the API at length, soak it with 20,000+ requests, audit the dependencies
#   make lock    regenerate the pinned requirements/*.txt from pyproject.toml
# Everything lands in .venv; `make clean` removes it. Installs follow the lock files, so an
# upstream release cannot change what CI runs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SERVE_STAMP := $(VENV)/.serve-installed
CHECKPOINTS ?= $(or $(UNCONV_CHECKPOINT_DIR),checkpoints)
PIP_COMPILE := $(BIN)/pip-compile --quiet --strip-extras --allow-unsafe --no-emit-index-url \
	--no-emit-find-links

.PHONY: serve test lint pytest bench browser stress lock clean

AXE_CORE := 4.14.1
# tsc checks the page client's type declarations (service/api/static/api.d.ts), npm, pinned
TYPESCRIPT := 5.9.3
TSC        := .cache/tsc/node_modules/.bin/tsc
TSC_STAMP  := .cache/tsc/.typescript-$(TYPESCRIPT)
AXE      := .cache/axe/node_modules/axe-core/axe.min.js
# ESLint and Prettier for the page's JavaScript (npm, pinned), as ruff is for the Python
ESLINT   := 10.15.0
ESLINT_JS := 10.0.1
PRETTIER := 3.10.1
GLOBALS  := 17.14.0
JSLINT   := .cache/jslint/.eslint-$(ESLINT)-$(ESLINT_JS)-prettier-$(PRETTIER)-globals-$(GLOBALS)
PAGE_JS  := service/api/static/*.js

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# serving only: the service, training and their dependencies, no dev tools. A regular install,
# not an editable one: setuptools warns about any editable install of this flat layout, and
# `make serve` runs from this directory, whose own packages come first on sys.path anyway
$(SERVE_STAMP): requirements/serve.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements/serve.txt
	$(BIN)/python -m pip install --quiet --no-deps .
	rm -rf build
	touch $(SERVE_STAMP)

$(STAMP): requirements/dev.txt client/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e . -e ./client
	touch $(STAMP) $(SERVE_STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/python -m training defaults --out $(CHECKPOINTS)
	$(BIN)/python -m training atlas --network cnn --checkpoints $(CHECKPOINTS) --if-stale
	UNCONV_CHECKPOINT_DIR=$(CHECKPOINTS) $(BIN)/python -m service

test: lint pytest

lint: $(STAMP) $(JSLINT) $(TSC_STAMP)
	$(BIN)/ruff check service training tests bench client devkit
	$(BIN)/ruff format --check service training tests bench client devkit
	$(BIN)/hadolint Dockerfile
	.cache/jslint/node_modules/.bin/eslint --max-warnings 0 $(PAGE_JS)
	.cache/jslint/node_modules/.bin/prettier --check $(PAGE_JS) $(wildcard service/api/static/*.d.ts) \
		eslint.config.js
	$(TSC) --noEmit --strict --target es2022 --lib es2022,dom --module es2022 \
		--moduleResolution bundler service/api/static/api.d.ts tests/service/api/static/api-usage.ts

$(TSC_STAMP):
	npm install --prefix .cache/tsc --no-save --no-audit --no-fund --loglevel=error \
		typescript@$(TYPESCRIPT)
	touch $@

$(JSLINT):
	npm install --prefix .cache/jslint --no-save --no-audit --no-fund --loglevel=error \
		eslint@$(ESLINT) @eslint/js@$(ESLINT_JS) globals@$(GLOBALS) prettier@$(PRETTIER)
	touch $@

pytest: $(STAMP)
	$(BIN)/python -m pytest

# axe-core for the browser tests (npm, pinned); Chromium comes from the system (.ci/run)
browser: $(AXE)

$(AXE):
	npm install --prefix .cache/axe --no-save --no-audit --no-fund --loglevel=error axe-core@$(AXE_CORE)

# BENCH_ARGS=--quick for a smoke run of every step (a minute or two)
bench: $(STAMP)
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk) \
		|| echo "wrk is missing: the loads fall back to the httpx generator"
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)

stress: $(STAMP)
	$(BIN)/python -m bench.serving.stress

lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet "pip-tools>=7.4"
	$(PIP_COMPILE) --output-file requirements/serve.txt pyproject.toml requirements/torch.in
	$(PIP_COMPILE) --extra dev --output-file requirements/dev.txt pyproject.toml requirements/torch.in

clean:
	rm -rf $(VENV)
