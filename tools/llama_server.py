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


def share_weights_between_aliases() -> None:
    """One loaded model for every alias with the same settings (writer and judge on the same GGUF).

    llama_cpp.server's LlamaProxy closes the model and loads it again whenever a request names
    another alias, even when both aliases point at the same file: for the 1.1 GB Qwen that is a
    reload between every writer and judge call. Here an alias whose settings differ only in its
    name is served by the model already loaded (the reply still carries the alias asked for)."""
    from llama_cpp.server import model as server_model

    proxy_cls = server_model.LlamaProxy
    original_call = proxy_cls.__call__

    def same_weights(a, b) -> bool:
        return a.model_dump(exclude={"model_alias"}) == b.model_dump(exclude={"model_alias"})

    def call(self, model=None):
        wanted = self._model_settings_dict.get(model) if model else None
        current = self._model_settings_dict.get(self._current_model_alias)
        if (wanted is not None and current is not None and self._current_model is not None
                and same_weights(wanted, current)):
            return self._current_model
        return original_call(self, model)

    proxy_cls.__call__ = call


def main() -> None:
    if os.environ.get("NEWSROOM_LOCAL_LLM_CPU_CHECK", "true").lower() not in ("0", "false", "no", "off"):
        problem = check_build()
        if problem:
            print(f"newsroom: {problem}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_UNUSABLE_BUILD)
    share_weights_between_aliases()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
