"""A real `newsroom serve` configured for the approval channels: Telegram (pointing at our fake
Bot API server, with allow-lists and a webhook secret) and the web page (with a token).

The shared `agent_server` fixture has no Telegram settings, and the server reads its settings at
start, so the approval tests get their own server on the same session database. These fixtures are
registered in conftest.py (not imported by the test modules), so both modules share one instance.
"""
from __future__ import annotations

import contextlib
import os

import pytest

from tests.engine_fixtures import JUDGE, PASSING, WRITER, draft_reply
from tests.fake_telegram import TOKEN
from tests.scripted_llm import ScriptedLLM
from tests.server_fixtures import AgentServer, free_port

GROUP_CHAT = -100123          # an allowed group chat
WEBHOOK_CHAT = -100456        # an allowed chat used by the webhook tests
STRANGER_CHAT = 999           # not allowed
APPROVER, APPROVER_2 = 501, 502
NOT_APPROVER = 777
WEBHOOK_SECRET = "wh-secret-3f1c9a-7d20b54e9c1f8a63"
WEB_TOKEN = "web-token-7d2e-41c8f09b3a6d2e75c0"


def approval_env(fake_url: str) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "NEWSROOM_TELEGRAM_API_BASE_URL": fake_url,
        "NEWSROOM_TELEGRAM_ALLOWED_CHATS": f"{GROUP_CHAT},{WEBHOOK_CHAT}",
        "NEWSROOM_TELEGRAM_APPROVERS": f"{APPROVER},{APPROVER_2}",
        "NEWSROOM_TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "NEWSROOM_WEB_TOKEN": WEB_TOKEN,
        # the fake Bot API has no flood limit; the tests' groups talk faster than Telegram allows
        "NEWSROOM_TELEGRAM_GROUP_MESSAGES_PER_MIN": "100000",
        # The tests run the sweep themselves, with their own deadlines.
        "NEWSROOM_APPROVAL_SWEEP_INTERVAL_S": "0",
        # A post may name a page on the tests' own loopback server (tests/web_fixtures.py), explicitly.
        "NEWSROOM_FETCH_ALLOW_HOSTS": "127.0.0.1",
    }


@pytest.fixture(scope="session")
def approval_llm(pg_url):
    """The scripted writer/judge behind approval_server (its own instance: registered once, in
    conftest, so test_telegram_bot and test_web_approval share one server)."""
    with ScriptedLLM(models=[WRITER, JUDGE]) as server:
        yield server


@pytest.fixture
def approval_script(approval_llm):
    """The writer answers drafts and the judge passes; a test may script more on top."""
    approval_llm.reset()
    approval_llm.on_chat(draft_reply, model=WRITER)
    approval_llm.on_chat(lambda req: PASSING, model=JUDGE)
    yield approval_llm
    approval_llm.reset()


@pytest.fixture(scope="session")
def approval_server(pg_url, approval_llm, session_dir, fake_telegram):  # noqa: F811
    env = dict(os.environ, DATABASE_URL=pg_url, NEWSROOM_LLM_BASE_URL=approval_llm.base_url,
               NEWSROOM_LLM_PROVIDER="llamacpp", NEWSROOM_LLM_MAX_ATTEMPTS="1", NEWSROOM_LOG_LEVEL="INFO",
               **approval_env(fake_telegram.url))
    server = AgentServer(free_port(), env, session_dir / "approval-server.log").start()
    yield server
    server.stop()


def bot_settings(fake_url: str, server_url: str, **overrides):
    """`newsroom bot`'s settings against the fake Bot API and an approval server."""
    from config import Settings

    return Settings(telegram_bot_token=TOKEN, telegram_api_base_url=fake_url,
                    telegram_allowed_chats=[GROUP_CHAT, WEBHOOK_CHAT], telegram_approvers=[APPROVER, APPROVER_2],
                    agent_server_url=server_url, telegram_group_messages_per_min=100000, **overrides)


@contextlib.asynccontextmanager
async def polling_bot(fake_url: str, server_url: str):
    """`newsroom bot`'s Application polling the fake (start_polling, not run_polling: no signal handlers)."""
    from telegram import Update

    from service.telegram.handlers import build_application
    from tests.server_fixtures import service_client

    app = build_application(bot_settings(fake_url, server_url), service_client(server_url))
    async with app:
        await app.start()
        await app.updater.start_polling(timeout=1, allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY])
        try:
            yield app
        finally:
            # Stopped even when the test failed: a poller left running takes the next tests' updates
            # from the shared fake (and "This Application is still running!" hides the first error).
            await app.updater.stop()
            await app.stop()


class InProcessServer:
    """Just enough of the Agent Server client for service.decisions.decide, over in-process runs."""

    def __init__(self):
        self.threads = self

    async def get_state(self, thread_id: str) -> dict:
        from service.runner import current

        snap = await current(thread_id)
        interrupts = [{"value": snap.interrupt, "id": snap.interrupt_id}] if snap.waiting_for_human else []
        return {"tasks": [{"interrupts": interrupts}], "checkpoint": {"checkpoint_id": snap.checkpoint_id}}


async def resume_in_process(thread_id: str, value: dict, config: dict | None = None) -> str:
    """A decisions.StartRun that resumes in this process (with InProcessServer)."""
    from service.runner import resume

    await resume(thread_id, value)
    return "in-process"


class ProcessKilled(BaseException):
    """Stands for a SIGKILL after a channel's claim committed: no `except Exception` handler runs
    (decide's release of the claim)."""


async def die_before_the_resume_starts(thread_id: str, value: dict, config: dict | None = None) -> str:
    """A decisions.StartRun whose process dies after the claim committed: no resume run, no release."""
    raise ProcessKilled


async def ledger_command(db, snap, action: str = "approve", text: str | None = None, reviewer: str = "test"):
    """The Command a channel would resume `snap`'s gate with: claimed in the approvals ledger, with
    its gate token (the interrupt refuses any other resume)."""
    from langgraph.types import Command

    from service.decisions import PendingInterrupt, claim_interrupt, resume_value

    pending = PendingInterrupt(thread_id=snap.thread_id, interrupt_id=snap.interrupt_id, payload=snap.interrupt)
    _, token = await claim_interrupt(db, pending, action=action, text=text, reviewer=reviewer, via="test")
    assert token, "the gate was decided already"
    return Command(resume=resume_value(action, text, reviewer, token))
