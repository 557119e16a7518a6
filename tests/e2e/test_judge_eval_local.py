"""`newsroom eval-judge --route local` (what `make eval` runs) on the REAL local model: the command starts
the on-demand llama.cpp server with the configured GGUF, judges, records the verdict under the weights'
identity, and stops the server. One short draft, a short verdict limit: this checks the route, not the judge."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server_fixtures import free_port
from tools.local_llm import models_reachable

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python not installed (make install installs it)")


@pytest.mark.timeout(900)
def test_the_local_route_starts_judges_records_and_stops_the_configured_model(tmp_path):
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    env = {**os.environ, "NEWSROOM_LOCAL_LLM_PORT": str(port), "NEWSROOM_LLM_BASE_URL": base_url,
           "NEWSROOM_LLM_PROVIDER": "llamacpp", "NEWSROOM_DATA_DIR": str(tmp_path / "state")}
    for k in ("NEWSROOM_JUDGE_BASE_URL", "NEWSROOM_JUDGE_PROVIDER", "ANTHROPIC_API_KEY", "LANGFUSE_PUBLIC_KEY"):
        env.pop(k, None)
    cache = tmp_path / "verdicts.jsonl"
    cmd = [sys.executable, "-m", "service.cli", "eval-judge", "--route", "local", "--only", "14-dpo-shallow",
           "--max-tokens", "48", "--timeout", "800", "--cache", str(cache), "--no-langfuse", "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = json.loads(proc.stdout.strip().splitlines()[-1])["runs"]
    assert run["route"] == "local" and run["calls"] == 1 and run["unavailable"] == 0
    assert run["weights"] and run["weights"].endswith("bytes)") and ".gguf" in run["weights"]
    assert run["max_tokens"] == 48 and run["items"] == 1
    (record,) = [json.loads(line) for line in cache.read_text().splitlines()]
    assert record["judge"]["endpoint"] == "on-demand local server" and record["raw_text"]
    assert record["tokens_in"] > 500  # the whole rubric, notes and draft went in
    assert models_reachable(base_url) is None  # the server this command started is gone
