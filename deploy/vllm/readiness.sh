#!/usr/bin/env bash
# Ready = /v1/models answers AND lists the adapter's served name (a vLLM started without
# --lora-modules still answers for the base model, so "the port is open" is not enough).
#
#   ./readiness.sh [BASE_URL] [ADAPTER_NAME] [TIMEOUT_S]
# Exit 0 when listed; 1 when the server answers without the adapter; 2 when it never answered.
set -euo pipefail

BASE_URL="${1:-${NEWSROOM_LLM_BASE_URL:-http://127.0.0.1:8000/v1}}"
ADAPTER_NAME="${2:-${ADAPTER_NAME:-newsroom-writer}}"
TIMEOUT_S="${3:-${TIMEOUT_S:-600}}"   # loading 8B weights takes minutes on a cold host
auth=()
if [[ -n "${VLLM_API_KEY:-}" ]]; then auth=(-H "Authorization: Bearer $VLLM_API_KEY"); fi

deadline=$(( $(date +%s) + TIMEOUT_S ))
answered=0
while (( $(date +%s) < deadline )); do
  if body="$(curl -fsS --max-time 5 "${auth[@]}" "$BASE_URL/models" 2>/dev/null)"; then
    answered=1
    if python3 -c 'import json,sys; ids=[m["id"] for m in json.loads(sys.stdin.read())["data"]]; sys.exit(0 if sys.argv[1] in ids else 1)' "$ADAPTER_NAME" <<<"$body"; then
      echo "ready: $ADAPTER_NAME listed on $BASE_URL/models"
      exit 0
    fi
  fi
  sleep 2
done
if (( answered )); then
  echo "NOT ready: $BASE_URL/models answers but does not list $ADAPTER_NAME; listed: $(python3 -c 'import json,sys; print([m["id"] for m in json.loads(sys.stdin.read())["data"]])' <<<"$body")" >&2
  echo "start vLLM with --enable-lora --lora-modules $ADAPTER_NAME=/path/to/adapter" >&2
  exit 1
fi
echo "NOT ready: no answer from $BASE_URL/models within ${TIMEOUT_S}s" >&2
exit 2
