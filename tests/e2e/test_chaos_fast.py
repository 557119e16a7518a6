"""R1 fast variant: the crash drill with 3 posts and 3 SIGKILLs of the serving process.

Runs evals/chaos/crash_resume.py as a subprocess (its own embedded PostgreSQL, scripted LLM and
worker), so the drill's environment never mixes with this session's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_three_posts_survive_three_sigkills(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NEWSROOM_LLM_BASE_URL")}
    out = subprocess.run(
        [sys.executable, "-m", "evals.chaos.crash_resume", "--posts", "3", "--kills", "3", "--seed", "3",
         "--deadline", "240", "--state-dir", str(tmp_path / "drill")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = out.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), out.stdout[-2000:] + out.stderr[-2000:]
    figures = json.loads(lines[-1])
    log = (tmp_path / "drill" / "worker.log").read_text(errors="replace")[-3000:]
    assert figures["finished"] == figures["started"] == 3, (figures, log)
    assert figures["duplicate_publications"] == 0 and figures["duplicate_site_files"] == 0
    assert figures["lost_approvals"] == 0 and figures["published_without_approval"] == 0
    assert figures["decisions_recorded_twice"] == 0
    assert figures["kills"] >= 1 and figures["restarts"] == figures["kills"]
    assert out.returncode == 0
