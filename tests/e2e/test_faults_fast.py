"""R3 fast: every fault scenario of evals/chaos/faults.py once (LLM 500s, hangs, truncated bodies,
429, invalid verdicts, PostgreSQL restarted mid-run). Subprocess: its own embedded PostgreSQL."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_faulty_run_ends_published_escalated_or_failed_with_a_reason():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NEWSROOM_LLM_BASE_URL")}
    out = subprocess.run([sys.executable, "-m", "evals.chaos.faults", "--deadline", "60"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    lines = out.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), out.stdout[-2000:] + out.stderr[-3000:]
    f = json.loads(lines[-1])
    assert f["runs"] == len(f["scenarios"]) >= 17
    assert f["hung"] == 0 and f["errors"] == 0, f["unexpected"]
    assert f["failed_without_reason"] == 0
    assert f["invalid_verdict_approved"] == 0 and f["published_without_human"] == 0
    assert f["unexpected"] == [], "\n".join(lines[:-1])
    assert f["db_restarts"] == 2
    by_name = {s["scenario"]: s for s in f["scenarios"]}
    assert by_name["writer_500_always"]["reason"].startswith("researcher:")  # the reason names the desk
    assert "did not validate" in by_name["judge_out_of_range"]["reason"]
    assert out.returncode == 0
