#!/usr/bin/env bash
# Install llama-cpp-python from a PORTABLE build, compiled once per machine and reused across clones.
#
# Why: the default build is GGML_NATIVE=ON, which enables every instruction CPUID reports. A VM
# that advertises AMX but traps on it (this project's machines) dies with SIGILL on the first real
# prompt batch, and a native wheel built on one host crashes on an older one. The flags come from
# the Makefile (LLAMA_CMAKE_ARGS): -DGGML_NATIVE=OFF and an explicit, widely available set.
#
# Why a cache of our own: pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS, so it hands
# back an old native wheel under the same version. Ours is keyed by version + flags + Python +
# machine, built with --no-cache-dir, and moved into place only when complete (a killed build
# leaves nothing half-written behind).
#
# usage: install-wheel.sh PIP VERSION "CMAKE_ARGS"
#   NEWSROOM_WHEEL_CACHE   cache folder (default ${XDG_CACHE_HOME:-~/.cache}/newsroom/wheels)
#   NEWSROOM_LLAMA_REBUILD=1  build again even if a cached wheel exists
set -euo pipefail
pip=$1 version=$2 cmake_args=$3
python=$(dirname "$pip")/python
pytag=$("$python" -c 'import sys, platform; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
key=$(printf '%s\n%s\n%s\n' "$version" "$cmake_args" "$pytag" | sha256sum | cut -c1-16)
cache=${NEWSROOM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/newsroom/wheels}/llama-cpp-python-$version-$key
wheel=$(ls "$cache"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -n 1 || true)
[ "${NEWSROOM_LLAMA_REBUILD:-0}" = 1 ] && wheel=""   # make llama-rebuild: build again, replace the cached wheel

if [ -z "$wheel" ]; then
  echo "building llama-cpp-python $version once for this machine (portable: $cmake_args)"
  echo "  this compiles llama.cpp: about 8 min on 2 quiet cores, up to ~20 min on busy ones; later clones reuse $cache"
  mkdir -p "$(dirname "$cache")"
  tmp=$(mktemp -d "$(dirname "$cache")/.build-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  started=$(date +%s)
  if ! CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
       "$pip" wheel -q --no-deps --no-cache-dir "llama-cpp-python==$version" -w "$tmp" >"$tmp/build.log" 2>&1; then
    tail -n 40 "$tmp/build.log" >&2
    echo "llama-cpp-python $version failed to build (log above); needs gcc/g++ and cmake" >&2
    exit 1
  fi
  rm -rf "$cache" && mkdir -p "$cache"
  mv "$tmp"/llama_cpp_python-*.whl "$cache"/
  printf 'version=%s\ncmake_args=%s\npython=%s\nbuilt=%s\nseconds=%s\n' "$version" "$cmake_args" "$pytag" \
    "$(date -u +%FT%TZ)" "$(( $(date +%s) - started ))" >"$cache/BUILD-INFO"
  wheel=$(ls "$cache"/llama_cpp_python-"$version"-*.whl | head -n 1)
  echo "  built in $(( $(date +%s) - started )) s: $wheel"
else
  echo "llama-cpp-python $version: reusing this machine's portable build $wheel"
fi
# --force-reinstall: a venv that holds an older (native) build gets ours, whatever its version says.
"$pip" install -q --no-deps --force-reinstall "$wheel"
