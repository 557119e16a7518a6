#!/usr/bin/env bash
# P7 setup time: minutes from a fresh clone to `make demo` stopped at the approval gate.
#
#   evals/bench/setup_time.sh [--from PATH_OR_URL] [--dir DIR] [--keep] [--budget-min 40]
#
# Clones the repository (default: this checkout, committed state), then times, separately:
#   install  `make install` (venv, torch CPU wheel, the project, llama.cpp build, SmolLM2 GGUF)
#   demo     `make demo` with stdin not a terminal: embedded PostgreSQL, corpus ingest, local LLM,
#            one post through the desks, stopping at the approval gate
# Each step is capped at --budget-min minutes. pip's cache (~/.cache/pip) is used as a user's
# would be: the first install on a machine downloads ~1 GB and compiles llama.cpp (~8 min on
# 2 cores); later ones reuse the cached wheels. The last line printed is one JSON object.
set -uo pipefail

SRC="$(cd "$(dirname "$0")/../.." && pwd)"
DIR=""
KEEP=0
BUDGET_MIN=40
while [[ $# -gt 0 ]]; do
  case "$1" in
    --from) SRC="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --budget-min) BUDGET_MIN="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
DIR="${DIR:-$(mktemp -d /tmp/newsroom-setup-XXXXXX)}"
LOG="$DIR.log"
: > "$LOG"

now() { date +%s.%N; }
minutes() { python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) / 60, 2))" "$1" "$2"; }

cleanup() {
  if [[ -d "$DIR/newsroom" ]]; then
    (cd "$DIR/newsroom" && [[ -x .venv/bin/newsroom ]] && .venv/bin/newsroom db stop >/dev/null 2>&1) || true
  fi
  if [[ $KEEP -eq 0 ]]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT

PIP_CACHE_MB_BEFORE=$(du -sm ~/.cache/pip 2>/dev/null | cut -f1 || echo 0)
t0=$(now)
git clone -q "$SRC" "$DIR/newsroom" >>"$LOG" 2>&1 || { echo "clone failed (see $LOG)"; exit 1; }
t_clone=$(now)
echo "cloned $SRC in $(minutes "$t0" "$t_clone") min -> $DIR/newsroom"

cd "$DIR/newsroom"
timeout "$((BUDGET_MIN * 60))" make install >>"$LOG" 2>&1
install_rc=$?
t_install=$(now)
echo "make install: rc $install_rc in $(minutes "$t_clone" "$t_install") min"

demo_rc=-1
at_gate=false
t_demo=$t_install
if [[ $install_rc -eq 0 ]]; then
  timeout "$((BUDGET_MIN * 60))" make demo </dev/null >"$DIR/demo.out" 2>>"$LOG"
  demo_rc=$?
  t_demo=$(now)
  if grep -q "waiting at the approval gate\|waiting for approval\|ESCALATED to human review" "$DIR/demo.out"; then
    at_gate=true
  fi
  echo "make demo: rc $demo_rc in $(minutes "$t_install" "$t_demo") min, at the approval gate: $at_gate"
  tail -5 "$DIR/demo.out" | sed 's/^/  | /'
fi
echo "log: $LOG"
printf '{"clone_min": %s, "install_min": %s, "install_rc": %s, "demo_min": %s, "demo_rc": %s, "at_gate": %s, "total_min": %s, "pip_cache_mb_before": %s, "cores": %s}\n' \
  "$(minutes "$t0" "$t_clone")" "$(minutes "$t_clone" "$t_install")" "$install_rc" \
  "$(minutes "$t_install" "$t_demo")" "$demo_rc" "$at_gate" "$(minutes "$t0" "$t_demo")" \
  "${PIP_CACHE_MB_BEFORE:-0}" "$(nproc)"
