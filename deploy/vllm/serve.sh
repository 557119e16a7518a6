#!/usr/bin/env bash
# Serve Llama 3.1 8B Instruct with the newsroom writer's QLoRA adapter on vLLM (GPU host).
# vLLM applies the LoRA natively at request time (no merge): the adapter is a served model
# named by --lora-modules NAME=PATH, and the gateway's writer route uses NAME as its model.
#
#   ./serve.sh                                      # the promoted adapter from the registry
#   ADAPTER_DIR=/adapters/r32 ./serve.sh            # or a given folder; then: ./readiness.sh
#
# Env: BASE_MODEL, ADAPTER_FAMILY, ADAPTER_NAME, ADAPTER_DIR, MAX_LORA_RANK, MAX_LORAS, PORT, HOST,
#      VLLM_API_KEY, EXTRA_ARGS, NEWSROOM (the CLI, for the registry lookup).
set -euo pipefail

BASE_MODEL="${BASE_MODEL:-meta-llama/Llama-3.1-8B-Instruct}"
ADAPTER_FAMILY="${ADAPTER_FAMILY:-newsroom-writer}"
MAX_LORA_RANK="${MAX_LORA_RANK:-32}"   # must be >= the adapter's r (we train r=16 and r=32)
HOST="${HOST:-0.0.0.0}"
PORT="${PORT:-8000}"
NEWSROOM="${NEWSROOM:-newsroom}"

# The adapter to serve: ADAPTER_DIR (+ ADAPTER_NAME) if given, else the family's PROMOTED adapter
# from the registry (`newsroom adapters path --promoted FAMILY` prints NAME=PATH; needs the same
# DATABASE_URL as the newsroom service).
if [[ -z "${ADAPTER_DIR:-}" ]]; then
  if spec="$("$NEWSROOM" adapters path --promoted "$ADAPTER_FAMILY" 2>/dev/null)"; then
    ADAPTER_NAME="${spec%%=*}"
    ADAPTER_DIR="${spec#*=}"
    echo "serving the promoted adapter of $ADAPTER_FAMILY from the registry: $ADAPTER_NAME ($ADAPTER_DIR)" >&2
  else
    echo "no ADAPTER_DIR and no promoted adapter in family $ADAPTER_FAMILY (newsroom adapters)" >&2
    exit 2
  fi
fi
ADAPTER_NAME="${ADAPTER_NAME:-$ADAPTER_FAMILY}"
# Promotion loads new adapters into this running server by name (POST /v1/load_lora_adapter).
export VLLM_ALLOW_RUNTIME_LORA_UPDATING="${VLLM_ALLOW_RUNTIME_LORA_UPDATING:-True}"

if [[ ! -f "$ADAPTER_DIR/adapter_config.json" ]]; then
  echo "no PEFT adapter at $ADAPTER_DIR (expected adapter_config.json + adapter_model.safetensors)" >&2
  exit 2
fi
rank="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["r"])' "$ADAPTER_DIR/adapter_config.json" 2>/dev/null || echo '?')"
if [[ "$rank" != "?" && "$rank" -gt "$MAX_LORA_RANK" ]]; then
  echo "adapter rank r=$rank exceeds --max-lora-rank $MAX_LORA_RANK: set MAX_LORA_RANK=$rank" >&2
  exit 2
fi

args=(serve "$BASE_MODEL"
  --host "$HOST" --port "$PORT"
  --enable-lora
  --lora-modules "$ADAPTER_NAME=$ADAPTER_DIR"
  --max-lora-rank "$MAX_LORA_RANK"
  --max-loras "${MAX_LORAS:-4}"
  --max-model-len "${MAX_MODEL_LEN:-8192}")
if [[ -n "${VLLM_API_KEY:-}" ]]; then args+=(--api-key "$VLLM_API_KEY"); fi
# shellcheck disable=SC2206
args+=(${EXTRA_ARGS:-})

echo "+ vllm ${args[*]}" >&2
exec vllm "${args[@]}"
