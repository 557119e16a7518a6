"""The local llama.cpp server on this CPU: a portable build, a real prompt batch, a death reported as one.

The regression these guard: a native build (GGML_NATIVE) on a VM that advertises AMX served
/v1/models and 1-token prompts, then died with SIGILL on the first prompt of a few hundred
tokens, and the CLI said "circuit breaker open".
"""
from __future__ import annotations

import importlib.util
import os
import signal
import sys

import httpx
import pytest

from tests.engine_fixtures import reset_runtime
from tests.server_fixtures import free_port
from tools import llama_server
from tools.local_llm import (
    LocalLLMError,
    LocalLLMServer,
    build_features,
    cpu_flags,
    describe_exit,
    local_llm_if_needed,
    unusable_instructions,
)

needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason="llama-cpp-python not installed (make install installs it)")

NATIVE_AMX_BUILD = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
                    "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | OPENMP = 1 | REPACK = 1 |")
PORTABLE_BUILD = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | OPENMP = 1 | REPACK = 1 |"
HASWELL_FLAGS = set("fpu sse sse2 pni ssse3 sse4_1 sse4_2 avx avx2 f16c fma bmi1 bmi2".split())


# --- the build check (pure) ----------------------------------------------------------------------

def test_a_native_build_with_amx_is_refused_even_where_cpuid_lists_amx():
    sapphire_rapids_vm = HASWELL_FLAGS | {"avx512f", "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx_vnni",
                                          "amx_int8", "amx_tile", "amx_bf16"}
    assert unusable_instructions(build_features(NATIVE_AMX_BUILD), sapphire_rapids_vm) == ["AMX_INT8"]


def test_instructions_the_cpu_does_not_list_are_refused():
    bad = unusable_instructions(build_features(NATIVE_AMX_BUILD), HASWELL_FLAGS)
    assert bad == ["AMX_INT8", "AVX512", "AVX512_BF16", "AVX512_VBMI", "AVX512_VNNI", "AVX_VNNI"]
    assert unusable_instructions(build_features(PORTABLE_BUILD), HASWELL_FLAGS) == []
    # switched-off features ("= 0") and non-instruction entries (OPENMP, REPACK) never count
    assert build_features("AVX = 1 | AVX512 = 0 | OPENMP = 1") == {"AVX", "OPENMP"}


def test_cpu_flags_parse_proc_cpuinfo():
    assert cpu_flags("processor\t: 0\nflags\t\t: fpu avx2 fma\nbugs\t: x\n") == {"fpu", "avx2", "fma"}
    assert cpu_flags("no flags line") is None


def test_exit_codes_in_words():
    assert "illegal instruction" in describe_exit(-signal.SIGILL)
    assert "out of memory" in describe_exit(-signal.SIGKILL)
    assert describe_exit(3) == "exited with code 3"


def test_the_server_entry_point_refuses_an_unusable_build(monkeypatch, capsys):
    fake = type(sys)("llama_cpp")
    fake.llama_print_system_info = lambda: NATIVE_AMX_BUILD.encode()
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    monkeypatch.setenv("NEWSROOM_LOCAL_LLM_CPU_CHECK", "true")
    with pytest.raises(SystemExit) as stop:
        llama_server.main()
    assert stop.value.code == llama_server.EXIT_UNUSABLE_BUILD
    err = capsys.readouterr().err
    assert "AMX_INT8" in err and "cannot run on this CPU" in err and "make llama-rebuild" in err


# --- the installed build, for real ----------------------------------------------------------------

@needs_llama
def test_the_installed_llama_cpp_build_runs_on_this_cpu():
    """Fails when pip handed back a native wheel (AMX / an instruction set this CPU lacks)."""
    assert llama_server.check_build() is None


@needs_llama
@pytest.mark.timeout(300)
def test_a_prompt_of_several_hundred_tokens_on_two_threads_completes(session_dir):
    """What crashed: a real prompt batch through the built library, on 2 threads."""
    server = LocalLLMServer(port=free_port(), aliases=["newsroom-writer"], threads=2,
                            log_path=session_dir / "llm-long-prompt.log").start(timeout_s=120)
    try:
        paragraph = ("Grouped-query attention shares each key/value head among a group of query heads, "
                     "so the KV cache shrinks by the ratio of query heads to KV heads. ")
        prompt = "Summarise in one sentence:\n\n" + paragraph * 16
        r = httpx.post(server.base_url + "/chat/completions", timeout=240, json={
            "model": "newsroom-writer", "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": prompt}],
        })
        r.raise_for_status()
        body = r.json()
        assert body["usage"]["prompt_tokens"] >= 300, body["usage"]
        assert body["choices"][0]["message"]["content"].strip()
        assert server.proc.poll() is None, server.exit_report()
    finally:
        server.stop()


@needs_llama
@pytest.mark.timeout(300)
async def test_a_local_server_that_dies_is_reported_with_its_signal_and_log(monkeypatch, session_dir, caplog):
    """A post's failure says the process died (and how to fix it), not 'circuit breaker open'."""
    from config import get_settings
    from tools.llm import LLMUnavailable, get_gateway

    port = free_port()
    monkeypatch.setenv("NEWSROOM_LOCAL_LLM_PORT", str(port))
    monkeypatch.setenv("NEWSROOM_LLM_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("NEWSROOM_LLM_PROVIDER", "llamacpp")
    monkeypatch.setenv("NEWSROOM_LLM_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("NEWSROOM_LLM_RETRY_INITIAL_S", "0.01")
    reset_runtime()
    try:
        with caplog.at_level("ERROR", logger="tools.local_llm"), local_llm_if_needed(get_settings()) as server:
            assert server is not None
            os.killpg(server.proc.pid, signal.SIGILL)  # what the AMX trap does to it
            server.proc.wait(30)
            messages = [{"role": "user", "content": "hello"}]
            for _ in range(4):  # enough failures to open the breaker: the reason must still name the death
                with pytest.raises(LLMUnavailable) as failed:
                    await get_gateway().complete_text("writer", messages, max_tokens=4)
            reason = str(failed.value)
            assert "BreakerOpen" in reason  # the breaker did open ...
            assert "local LLM server" in reason and "SIGILL" in reason and "make llama-rebuild" in reason  # ... and it says why
        report = "\n".join(r.getMessage() for r in caplog.records)
        assert "killed by SIGILL (illegal instruction" in report and "last lines of its log" in report
    finally:
        monkeypatch.undo()
        reset_runtime()


@needs_llama
def test_a_server_that_exits_at_start_says_why(session_dir, monkeypatch):
    """A start that fails (here: a model file that is not there) is an error with the log's reason, not a timeout."""
    server = LocalLLMServer(port=free_port(), aliases=["x"], log_path=session_dir / "llm-refused.log")
    monkeypatch.setattr("tools.local_llm.gguf_path", lambda *a: session_dir / "missing.gguf")
    with pytest.raises(LocalLLMError) as failed:
        server.start(timeout_s=60)
    text = str(failed.value)
    assert "failed to start" in text and "exited with code" in text and "last lines of its log" in text
