"""Hostile suite, Telegram (the real PTB handlers against our fake Bot API and a real `newsroom
serve`): another chat's post is not shown by /status; a reply to a question asked of one approver
does not decide for another; strangers' chats are stopped by the gatekeeper before any handler."""
from __future__ import annotations

import pytest

from storage import posts
from tests.approval_fixtures import (
    APPROVER,
    APPROVER_2,
    GROUP_CHAT,
    NOT_APPROVER,
    STRANGER_CHAT,
    WEBHOOK_CHAT,
    polling_bot,
)
from tests.e2e.test_telegram_bot import buttons, gate_message, start_post

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def bot(approval_server, fake_telegram, db):
    async with polling_bot(fake_telegram.url, approval_server.url) as app:
        yield app


async def test_status_is_scoped_to_the_chat_and_replies_to_the_asked_approver(bot, fake_telegram, approval_script, db):
    fake = fake_telegram
    # Both chats are shared with the session's other Telegram modules (test_telegram_bot and the fuzz
    # tests post GQA drafts to WEBHOOK_CHAT and get refusals in GROUP_CHAT): look only at what came
    # after this test began, or another module's messages decide the outcome (in either direction).
    since = len(fake.chat_messages(WEBHOOK_CHAT))
    tid = await start_post(fake, GROUP_CHAT, APPROVER, "Scoped status")
    gate = await gate_message(fake, GROUP_CHAT, tid)
    # a member (not an approver) of another allowed chat asks for it by its id suffix: nothing of it is shown
    before = len(fake.chat_messages(WEBHOOK_CHAT))
    fake.send_text(WEBHOOK_CHAT, NOT_APPROVER, f"/status {tid[-8:]}")
    refusal = await fake.wait_for(lambda: next((m for m in fake.chat_messages(WEBHOOK_CHAT)[before:]
                                                if "No post matches" in (m.get("text") or "")), None),
                                  what="the scoped refusal")
    assert tid not in refusal["text"]
    shown = [m.get("text") or "" for m in fake.chat_messages(WEBHOOK_CHAT)[since:]]
    assert not any("Grouped-query attention" in t or "Scoped status" in t for t in shown), shown
    # approver 1 presses Revise; approver 2 answers the question asked of approver 1: nothing changes
    fake.press(GROUP_CHAT, APPROVER, gate, buttons(gate)["revise"])
    question = await fake.wait_for(lambda: next((m for m in fake.chat_messages(GROUP_CHAT)
                                                 if (m.get("text") or "").startswith("✏️ What should the writer change?")
                                                 and tid[-8:] in m["text"]), None), what="the feedback question")
    before = len(fake.chat_messages(GROUP_CHAT))
    fake.send_text(GROUP_CHAT, APPROVER_2, "rewrite it as a poem", reply_to=question)
    await fake.wait_for(lambda: any("asked of another approver" in (m.get("text") or "")
                                    for m in fake.chat_messages(GROUP_CHAT)[before:]), what="the refusal")
    assert [e for e in await posts.list_events(db, tid) if e["kind"] == "human_decision"] == []
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"


async def test_a_strangers_chat_is_stopped_by_the_gatekeeper(bot, fake_telegram, approval_script, db):
    fake = fake_telegram
    before = len(fake.chat_messages(STRANGER_CHAT))
    for text in ("/post Something nobody asked for", "/status", "/list", "/cancel abcdef12", "hello"):
        fake.send_text(STRANGER_CHAT, APPROVER, text)
    await fake.wait_for(lambda: len([m for m in fake.chat_messages(STRANGER_CHAT)[before:]
                                     if "may not use this bot" in (m.get("text") or "")]) >= 4,
                        what="a refusal per command")
    assert not any(p["topic"] == "Something nobody asked for" for p in await posts.list_posts(db, limit=200))
