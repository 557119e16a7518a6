"""R5 (logs): no secret reaches a log line, even at DEBUG and on error paths.

A post runs through the real CLI in a subprocess with every secret set to a recognisable canary:
the Anthropic key (the judge really goes to an Anthropic-compatible endpoint: the scripted
server), the OpenAI-compatible endpoint's key, the Telegram bot token, the webhook secret, the
web approval token, the Langfuse secret key (its host is down: export fails, and says so) and a
database password (in DATABASE_URL; the embedded server trusts local connections, so the password
is carried but never checked). The first judge call fails with a 500 so the error paths log too.
Everything the processes print (stdout, stderr) is searched for the canaries.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.engine_fixtures import PASSING
from tests.scripted_llm import Fault
from tests.server_fixtures import free_port

ROOT = Path(__file__).resolve().parents[2]
CANARIES = {
    "ANTHROPIC_API_KEY": "sk-ant-canary-3b9e1f77aa",
    "NEWSROOM_LLM_API_KEY": "sk-canary-openai-5c2d88",
    "TELEGRAM_BOT_TOKEN": "987654:canary-bot-token-Zq81xw",
    "NEWSROOM_TELEGRAM_WEBHOOK_SECRET": "canary-webhook-secret-771-3e9a0c5d2b84",
    "NEWSROOM_WEB_TOKEN": "canary-web-token-4410-8d2f61b0c7e93a",
    "LANGFUSE_SECRET_KEY": "sk-lf-canary-90ab12",
}
DB_PASSWORD = "canary-db-password-6613"


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = (parts.username or "postgres")
    host = parts.hostname or ""
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", parts.path, parts.query, parts.fragment))


def test_no_secret_in_cli_logs_at_debug(db, llm, pg_url):
    llm.script(Fault.server_error(), model="claude-canary-judge")
    llm.on_chat(lambda req: PASSING, model="claude-canary-judge")
    llm.models.append("claude-canary-judge")
    env = dict(os.environ, **CANARIES, DATABASE_URL=_with_password(pg_url, DB_PASSWORD),
               ANTHROPIC_BASE_URL=llm.anthropic_base_url, NEWSROOM_ANTHROPIC_JUDGE_MODEL="claude-canary-judge",
               NEWSROOM_LLM_MAX_ATTEMPTS="2", NEWSROOM_LOG_LEVEL="DEBUG", LANGFUSE_PUBLIC_KEY="pk-lf-public",
               LANGFUSE_HOST=f"http://127.0.0.1:{free_port()}", LANGFUSE_TIMEOUT="1",
               NEWSROOM_TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{free_port()}")
    try:
        post = subprocess.run([sys.executable, "-m", "service.cli", "post", "Secrets stay secret"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=180)
        assert post.returncode == 0, post.stderr[-3000:]
        tid = post.stdout.split("newsroom approve ")[1].split()[0]
        approve = subprocess.run([sys.executable, "-m", "service.cli", "approve", tid], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=180)
        assert approve.returncode == 0, approve.stderr[-3000:]
    finally:
        llm.models.remove("claude-canary-judge")
    # the run really went through the paths that hold the secrets
    assert any(r.api == "anthropic" and CANARIES["ANTHROPIC_API_KEY"] in (r.headers.get("x-api-key", "")
                                                                          + r.headers.get("authorization", ""))
               for r in llm.requests), "the judge did not use the Anthropic route"
    assert any(r.api == "openai" and r.headers.get("authorization") == f"Bearer {CANARIES['NEWSROOM_LLM_API_KEY']}"
               for r in llm.requests)
    logs = f"{post.stdout}\n{post.stderr}\n{approve.stdout}\n{approve.stderr}"
    assert "DEBUG" in logs and "published to" in logs  # DEBUG output was produced and searched
    leaked = [name for name, value in {**CANARIES, "DB_PASSWORD": DB_PASSWORD}.items() if value in logs]
    assert leaked == [], f"secrets in logs: {leaked}"
