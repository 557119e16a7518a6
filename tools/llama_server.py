"""Entry point of the local LLM server process: check the llama.cpp build against this CPU, then
run llama_cpp.server (`python -m tools.llama_server --config_file F`).

A build that uses an instruction the CPU cannot execute does not fail at load: it serves
/v1/models and a 1-token prompt, then dies with SIGILL on the first real prompt batch. Refusing
here, before the model loads, turns that into one clear line in the server's log.
"""
from __future__ import annotations

import os
import runpy
import sys

EXIT_UNUSABLE_BUILD = 3


def check_build() -> str | None:
    """Why this llama.cpp build must not start on this CPU, or None."""
    import llama_cpp

    from tools.local_llm import REBUILD_HINT, build_features, cpu_flags, unusable_instructions

    info = llama_cpp.llama_print_system_info()
    info = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    bad = unusable_instructions(build_features(info), cpu_flags())
    if not bad:
        return None
    return (f"this llama.cpp build uses {', '.join(bad)}, which cannot run on this CPU "
            f"(build: {info.strip()}). Fix: {REBUILD_HINT}")


def main() -> None:
    if os.environ.get("NEWSROOM_LOCAL_LLM_CPU_CHECK", "true").lower() not in ("0", "false", "no", "off"):
        problem = check_build()
        if problem:
            print(f"newsroom: {problem}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_UNUSABLE_BUILD)
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
