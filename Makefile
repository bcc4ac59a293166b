# unconv: two commands for a new user.
#   make serve   create the environment, train missing default checkpoints, start the service
#   make test    lint and run the whole test suite
# Everything lands in .venv; `make clean` removes it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHECKPOINTS ?= $(or $(UNCONV_CHECKPOINT_DIR),checkpoints)

.PHONY: serve test lint pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/python -m training defaults --out $(CHECKPOINTS)
	UNCONV_CHECKPOINT_DIR=$(CHECKPOINTS) $(BIN)/python -m service

test: lint pytest

lint: $(STAMP)
	$(BIN)/ruff check service training tests bench
	$(BIN)/ruff format --check service training tests bench
	$(BIN)/hadolint Dockerfile

pytest: $(STAMP)
	$(BIN)/python -m pytest

# BENCH_ARGS=--quick for a smoke run of every step (a minute or two)
bench: $(STAMP)
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk) \
		|| echo "wrk is missing: the loads fall back to the httpx generator"
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV)
