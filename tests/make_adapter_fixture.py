"""Rebuild the committed LoRA fixture (tests/fixtures/adapters/newsroom-writer) with our own commands.

    .venv/bin/python -m tests.make_adapter_fixture [--steps 12]

1. decided posts through the real graph (tests/training_helpers.py: scripted Writer over HTTP, an
   embedded PostgreSQL in a temporary folder, a human revising then approving each post);
2. `newsroom export-training --out tests/fixtures/training` (sft.jsonl, dpo.jsonl, manifest.json);
3. `newsroom train-adapter --data tests/fixtures/training/sft.jsonl --name newsroom-writer
   --recipe cpu-tiny --steps N --out tests/fixtures/adapters/newsroom-writer --no-register`.
It was run once; the tests (tests/e2e/test_vllm_tier.py) serve what it wrote.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="newsroom-fixture-"))
    os.environ.update(NEWSROOM_DATA_DIR=str(work / "state"), NEWSROOM_SITE_DIR=str(work / "site"),
                      HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    from storage.embedded import start_embedded, stop_embedded
    from tests.scripted_llm import ScriptedLLM

    pg = work / "state" / "pg"
    os.environ["DATABASE_URL"] = start_embedded(pg)
    try:
        with ScriptedLLM(models=["newsroom-writer", "newsroom-judge"]) as llm:
            os.environ.update(NEWSROOM_LLM_BASE_URL=llm.base_url, NEWSROOM_LLM_PROVIDER="llamacpp")
            from tests.engine_fixtures import reset_runtime
            from tests.training_helpers import make_decided_posts, script_writer

            reset_runtime()
            script_writer(llm)

            async def _posts():
                from storage.connect import close_database

                try:
                    return await make_decided_posts()
                finally:
                    await close_database()

            made = asyncio.run(_posts())
            print(json.dumps(made))
        env = dict(os.environ, HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
        cli = [sys.executable, "-m", "service.cli"]
        subprocess.run([*cli, "export-training", "--out", str(FIXTURES / "training")], cwd=ROOT, env=env, check=True)
        subprocess.run([*cli, "train-adapter", "--data", str(FIXTURES / "training" / "sft.jsonl"),
                        "--name", "newsroom-writer", "--recipe", "cpu-tiny", "--steps", str(args.steps),
                        "--out", str(FIXTURES / "adapters" / "newsroom-writer"), "--no-register"],
                       cwd=ROOT, env=env, check=True)
    finally:
        stop_embedded(pg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
