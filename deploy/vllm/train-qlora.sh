#!/usr/bin/env bash
# The seed's QLoRA recipe on a GPU host: Llama 3.1 8B Instruct, NF4 4-bit base, LoRA r=16, alpha 32,
# lr 2e-4 over all linear projections (`newsroom train-adapter --recipe llama31-8b-qlora`). The
# same code trains the tiny CPU adapter of the tests; only the recipe differs.
#
#   ./train-qlora.sh NAME [EXPORT_DIR]      e.g. ./train-qlora.sh newsroom-writer-2026-12
#
# Expected envelope (the seed's numbers, not measured here: no GPU in this project's CI): a 161 MB
# adapter (r=16 over all linear projections, fp32), ~5 min for 550 examples on one A100 80GB.
# Needs: a CUDA torch, `pip install -e '.[train]'` (peft, bitsandbytes), the base model in the
# Hugging Face cache (or BASE=/path/to/hf-folder), DATABASE_URL of the newsroom database.
# Then: ./serve.sh loads nothing new by itself — promote it into the running vLLM:
#   newsroom promote-adapter NAME --vllm-url http://HOST:8000/v1 --judge
set -euo pipefail
name=${1:?usage: train-qlora.sh NAME [EXPORT_DIR]}
export_dir=${2:-./training-export}
NEWSROOM="${NEWSROOM:-newsroom}"
"$NEWSROOM" export-training --out "$export_dir"
"$NEWSROOM" train-adapter --data "$export_dir/sft.jsonl" --name "$name" --recipe llama31-8b-qlora \
  --base "${BASE:-meta-llama/Llama-3.1-8B-Instruct}" --out "${ADAPTERS_DIR:-/adapters}/$name" ${EXTRA_ARGS:-}
