"""The real PTB Application against our fake Bot API server, with a real `newsroom serve`
(langgraph dev on embedded PostgreSQL, scripted LLM): polling mode in-process, webhook mode in
the Agent Server's custom HTTP app, and the approval deadline sweep."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from config import Settings
from service import decisions, sweep
from service.telegram.format import split_message, tg_len
from service.telegram.notifier import TelegramNotifier
from storage import approvals, posts
from tests.approval_fixtures import (
    APPROVER,
    APPROVER_2,
    GROUP_CHAT,
    NOT_APPROVER,
    STRANGER_CHAT,
    WEBHOOK_CHAT,
    WEBHOOK_SECRET,
    bot_settings,
    polling_bot,
)
from tests.engine_fixtures import WRITER
from tests.fake_telegram import TOKEN
from tests.server_fixtures import SERVICE_TOKEN, STUDIO_APPROVER_TOKEN, approver_client, service_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def bot(approval_server, fake_telegram, db):
    async with polling_bot(fake_telegram.url, approval_server.url) as app:
        yield app


# --- helpers --------------------------------------------------------------------------------------------

THREAD_RE = re.compile(r"thread <code>([0-9a-f-]{36})</code>")


def thread_of(msg: dict) -> str | None:
    m = THREAD_RE.search(msg.get("text") or "")
    return m.group(1) if m else None


def buttons(msg: dict) -> dict[str, str]:
    rows = (msg.get("reply_markup") or {}).get("inline_keyboard") or []
    return {b["text"].split()[-1].lower(): b["callback_data"] for row in rows for b in row}


async def start_post(fake, chat: int, user: int, topic: str) -> str:
    fake.send_text(chat, user, f"/post {topic}")
    progress = await fake.wait_for(lambda: next((m for m in fake.chat_messages(chat)
                                                 if topic in (m.get("text") or "") and thread_of(m)), None),
                                   what=f"the progress message for {topic!r}")
    return thread_of(progress)


async def gate_message(fake, chat: int, thread_id: str, version: int = 1, timeout: float = 30) -> dict:
    def _find():
        return next((m for m in fake.chat_messages(chat) if thread_of(m) == thread_id
                     and f"Draft v{version} ready" in (m.get("text") or "") and buttons(m)), None)
    return await fake.wait_for(_find, timeout=timeout, what=f"the approval message of {thread_id} v{version}")


def progress_message(fake, chat: int, thread_id: str) -> dict:
    return next(m for m in fake.chat_messages(chat) if thread_of(m) == thread_id and m["text"].startswith("📝"))


async def published_message(fake, chat: int, title: str = "GQA and the KV cache") -> dict:
    return await fake.wait_for(lambda: next((m for m in fake.chat_messages(chat)
                                             if (m.get("text") or "").startswith(f"📣 Published “{title}”")), None),
                               what="the published message")


def decision_events(events: list[dict]) -> list[dict]:
    return [e for e in events if e["kind"] == "human_decision"]


# --- pure helpers --------------------------------------------------------------------------------------------

def test_split_message_respects_the_limit_and_loses_nothing():
    para = ("Grouped-query attention shares one key/value head among a group of query heads. " * 12).strip()
    text = "\n\n".join([para] * 20) + "\n\n" + "𝛼" * 5000  # astral chars count twice in UTF-16
    pieces = split_message(text)
    assert len(pieces) > 3 and all(tg_len(p) <= 4096 for p in pieces)
    assert "".join(pieces).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")


# --- polling mode ------------------------------------------------------------------------------------------

async def test_post_then_approve_publishes_and_reports_where(bot, fake_telegram, approval_script, db):
    fake = fake_telegram
    tid = await start_post(fake, GROUP_CHAT, APPROVER, "How GQA shrinks the KV cache")
    gate = await gate_message(fake, GROUP_CHAT, tid)
    text = gate["text"]
    assert "accuracy 4 · calibration 4 · depth 4 · audience 4" in text and "mean 4.00" in text
    assert "Cost: $" in text and "tokens" in text and "Sources" in text
    assert set(buttons(gate)) == {"approve", "revise", "reject", "edit", "edits", "at…"}
    # the draft itself went before the summary
    assert any(m.get("text", "").startswith("GQA and the KV cache\n\nGrouped-query attention")
               for m in fake.chat_messages(GROUP_CHAT))
    # ONE progress message, edited as the desks finished
    progress = progress_message(fake, GROUP_CHAT, tid)
    assert "💰 estimate $" in progress["text"] and "LLM calls" in progress["text"]  # the estimate, before the run
    for line in ("✓ Research", "✓ Draft v1", "✓ Editor: APPROVE (mean 4.00)", "⏸ Waiting for approval"):
        assert line in progress["text"], progress["text"]
    assert len([m for m in fake.chat_messages(GROUP_CHAT) if thread_of(m) == tid and m["text"].startswith("📝")]) == 1
    edits = [c for c in fake.calls_of("editMessageText") if int(c.params["message_id"]) == progress["message_id"]
             and int(c.params["chat_id"]) == GROUP_CHAT]
    assert len(edits) >= 3

    fake.press(GROUP_CHAT, APPROVER, gate, buttons(gate)["approve"])
    done = await published_message(fake, GROUP_CHAT)
    location = done["text"].splitlines()[-1]
    assert Path(location).exists() and "GQA and the KV cache" in Path(location).read_text()
    post = await posts.get_post(db, tid)
    assert post["status"] == "published" and post["source"] == "telegram"
    assert post["metadata"]["chat_id"] == GROUP_CHAT and post["metadata"]["user_id"] == APPROVER
    assert [e["actor"] for e in decision_events(await posts.list_events(db, tid))] == [f"@user{APPROVER} (telegram {APPROVER})"]
    # the buttons are gone from the decided draft
    assert "reply_markup" not in fake.messages[(GROUP_CHAT, gate["message_id"])]
    # the Agent Server holds the thread (Studio lists it) with the Telegram metadata
    thread = await service_client(bot.bot_data["newsroom"].settings.agent_server_url).threads.get(tid)
    assert thread["metadata"]["source"] == "telegram" and thread["metadata"]["chat_id"] == GROUP_CHAT

    # /status and /list show it
    fake.send_text(GROUP_CHAT, NOT_APPROVER, f"/status {tid[-8:]}")
    await fake.wait_for(lambda: any("status: <b>published</b>" in (m.get("text") or "") and tid in m["text"]
                                    for m in fake.chat_messages(GROUP_CHAT)), what="/status reply")
    fake.send_text(GROUP_CHAT, NOT_APPROVER, "/list")
    await fake.wait_for(lambda: any((m.get("text") or "").startswith("<b>Recent posts</b>") and tid[-8:] in m["text"]
                                    for m in fake.chat_messages(GROUP_CHAT)), what="/list reply")


async def test_double_press_resumes_once_and_a_finished_run_answers_already_decided(
        bot, fake_telegram, approval_script, db):
    fake = fake_telegram
    tid = await start_post(fake, GROUP_CHAT, APPROVER, "Double press on the KV cache")
    gate = await gate_message(fake, GROUP_CHAT, tid)
    data = buttons(gate)["approve"]
    first = fake.press(GROUP_CHAT, APPROVER, gate, data)
    second = fake.press(GROUP_CHAT, APPROVER_2, gate, data)  # another approver, at the same moment
    await fake.wait_for(lambda: fake.callback_answers(second["callback_query"]["id"]), what="the second answer")
    assert "Already decided" in fake.callback_answers(second["callback_query"]["id"])[0]["text"]
    await fake.wait_for(lambda: _published_count(fake, tid) >= 1, what="publication")
    # after the run finished: a third press resumes nothing either
    await _wait_status(db, tid, "published")
    third = fake.press(GROUP_CHAT, APPROVER, gate, data)
    await fake.wait_for(lambda: fake.callback_answers(third["callback_query"]["id"]), what="the third answer")
    assert "Already decided" in fake.callback_answers(third["callback_query"]["id"])[0]["text"]
    assert fake.callback_answers(first["callback_query"]["id"])[0]["text"].startswith("✅ Approved")
    await asyncio.sleep(1.0)  # a second resume, had one started, would have recorded by now
    assert len(decision_events(await posts.list_events(db, tid))) == 1
    runs = await service_client(bot.bot_data["newsroom"].settings.agent_server_url).runs.list(tid)
    assert len(runs) == 2  # the /post run and ONE resume
    assert len(await posts.publications_for(db, tid)) == 1


def _published_count(fake, tid: str) -> int:
    return sum(1 for m in fake.chat_messages(GROUP_CHAT) if thread_of(m) == tid and "📣 Published" in m["text"])


async def _wait_status(db, tid: str, status: str, timeout: float = 30) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        post = await posts.get_post(db, tid)
        if post and post["status"] == status:
            return post
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"post {tid} is {post and post['status']}, not {status}")
        await asyncio.sleep(0.1)


async def test_revise_with_feedback_produces_a_new_draft(bot, fake_telegram, approval_script, db):
    fake = fake_telegram
    tid = await start_post(fake, GROUP_CHAT, APPROVER, "Revise the GQA post")
    gate = await gate_message(fake, GROUP_CHAT, tid)
    press = fake.press(GROUP_CHAT, APPROVER, gate, buttons(gate)["revise"])
    question = await fake.wait_for(lambda: next((m for m in fake.chat_messages(GROUP_CHAT)
                                                 if (m.get("text") or "").startswith("✏️ What should the writer change?")
                                                 and tid[-8:] in m["text"]), None), what="the feedback question")
    assert question["_reply_markup"]["force_reply"] is True
    await fake.wait_for(lambda: fake.callback_answers(press["callback_query"]["id"]), what="answer")
    assert "Reply to my question" in fake.callback_answers(press["callback_query"]["id"])[0]["text"]
    # a non-approver's answer changes nothing
    fake.send_text(GROUP_CHAT, NOT_APPROVER, "make it about cats", reply_to=question)
    await fake.wait_for(lambda: any((m.get("text") or "").startswith("⛔ Only approvers")
                                    for m in fake.chat_messages(GROUP_CHAT)), what="the refusal")
    fake.send_text(GROUP_CHAT, APPROVER, "Add a worked example: 32 query heads, 8 KV heads.", reply_to=question)
    gate2 = await gate_message(fake, GROUP_CHAT, tid, version=2)
    assert "Draft v2 ready" in gate2["text"]
    writer_prompts = [r.prompt for r in approval_script.requests_for(WRITER)]
    assert any("32 query heads, 8 KV heads" in p for p in writer_prompts)
    decisions_ = decision_events(await posts.list_events(db, tid))
    assert [(d["detail"]["decision"], d["detail"]["feedback"]) for d in decisions_] == [
        ("revise", "Add a worked example: 32 query heads, 8 KV heads.")]
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
    # the old draft's buttons answer "already decided"
    old = fake.press(GROUP_CHAT, APPROVER, gate, buttons(gate)["approve"])
    await fake.wait_for(lambda: fake.callback_answers(old["callback_query"]["id"]), what="old button answer")
    assert "Already decided" in fake.callback_answers(old["callback_query"]["id"])[0]["text"]
    # Reject v2 with a reason: nothing is published
    fake.press(GROUP_CHAT, APPROVER_2, gate2, buttons(gate2)["reject"])
    why = await fake.wait_for(lambda: next((m for m in fake.chat_messages(GROUP_CHAT)
                                            if (m.get("text") or "").startswith("❌ Why reject it?")
                                            and tid[-8:] in m["text"]), None), what="the reason question")
    fake.send_text(GROUP_CHAT, APPROVER_2, "Off-topic for this week.", reply_to=why)
    post = await _wait_status(db, tid, "rejected")
    assert post["status_reason"] == "Off-topic for this week."
    assert await posts.publications_for(db, tid) == []


async def test_unauthorized_chat_and_non_approver_change_nothing(bot, fake_telegram, approval_script, db):
    fake = fake_telegram
    client = service_client(bot.bot_data["newsroom"].settings.agent_server_url)
    fake.send_text(STRANGER_CHAT, APPROVER, "/post Anything at all")
    refusal = await fake.wait_for(lambda: next((m for m in fake.chat_messages(STRANGER_CHAT)
                                                if (m.get("text") or "").startswith("⛔")), None), what="refusal")
    assert "may not use this bot" in refusal["text"] and str(STRANGER_CHAT) in refusal["text"]
    assert await client.threads.search(metadata={"chat_id": STRANGER_CHAT}) == []
    assert await approvals.posts_for_chat(db, STRANGER_CHAT) == []

    tid = await start_post(fake, GROUP_CHAT, NOT_APPROVER, "Anyone in the group may start a post")
    gate = await gate_message(fake, GROUP_CHAT, tid)
    press = fake.press(GROUP_CHAT, NOT_APPROVER, gate, buttons(gate)["approve"])
    await fake.wait_for(lambda: fake.callback_answers(press["callback_query"]["id"]), what="answer")
    answer = fake.callback_answers(press["callback_query"]["id"])[0]
    assert "Only approvers" in answer["text"] and answer.get("show_alert") in ("true", True)
    # a stranger chat pressing a copied button is refused the same way
    stray = fake.press(STRANGER_CHAT, APPROVER, {**gate, "chat": {"id": STRANGER_CHAT, "type": "private"}},
                       buttons(gate)["approve"])
    await fake.wait_for(lambda: fake.callback_answers(stray["callback_query"]["id"]), what="answer")
    # a malformed button and a bare /post get clear answers, and the bot keeps going
    junk = fake.press(GROUP_CHAT, APPROVER, gate, "nr:zz:??")
    fake.send_text(GROUP_CHAT, APPROVER, "/post")
    await fake.wait_for(lambda: fake.callback_answers(junk["callback_query"]["id"]), what="answer")
    assert "not recognised" in fake.callback_answers(junk["callback_query"]["id"])[0]["text"]
    await fake.wait_for(lambda: any((m.get("text") or "").startswith("Usage: /post TOPIC")
                                    for m in fake.chat_messages(GROUP_CHAT)), what="usage")
    assert (await decisions.pending_interrupt(client, tid)) is not None
    assert decision_events(await posts.list_events(db, tid)) == []
    # /cancel by an approver ends it as rejected, through the same once-only path
    fake.send_text(GROUP_CHAT, APPROVER, f"/cancel {tid[-8:]}")
    post = await _wait_status(db, tid, "rejected")
    assert post["status_reason"].startswith("cancelled by @user501")


async def test_cancel_of_a_running_post_ends_its_graph_so_recovery_leaves_it(bot, fake_telegram, approval_script,
                                                                             approval_server, db):
    from service.recovery import plan_recovery
    from tests.scripted_llm import Fault

    fake = fake_telegram
    approval_script.script(Fault.hang(30), model=WRITER)  # the first desk's LLM call hangs: a run in flight
    tid = await start_post(fake, GROUP_CHAT, APPROVER, "Cancel me while drafting")
    await fake.wait_for(lambda: any("Cancel me while drafting" in r.prompt for r in approval_script.requests_for(WRITER)),
                        what="the hanging LLM call")
    assert (await posts.get_post(db, tid))["status"] == "researching"
    fake.send_text(GROUP_CHAT, APPROVER, f"/cancel {tid[-8:]}")
    post = await _wait_status(db, tid, "rejected")
    assert post["status_reason"].startswith("cancelled by")
    await fake.wait_for(lambda: any((m.get("text") or "").startswith("Cancelled: Cancel me while drafting")
                                    for m in fake.chat_messages(GROUP_CHAT)), what="the cancel reply")
    state = await service_client(approval_server.url).threads.get_state(tid)
    assert state["next"] == [] and state["values"]["outcome"] == "rejected"  # no desk left pending
    [(_, plan)] = await plan_recovery(db, thread_ids=[tid])
    assert plan.action == "finished"  # recovery will not resume a cancelled post
    assert await posts.publications_for(db, tid) == []


async def test_a_failed_post_is_retried_from_the_chat_and_reaches_the_gate(bot, fake_telegram, approval_script,
                                                                         approval_server, db):
    """The LLM fails the post (one attempt, in the test server); the failure message says how to
    retry; a non-approver's /retry changes nothing; an approver's /retry runs it from where it
    failed, as a server run, to the approval gate in the same chat."""
    from tests.scripted_llm import Fault

    fake = fake_telegram
    approval_script.script(Fault.server_error(503, "model server restarting"), model=WRITER)
    tid = await start_post(fake, GROUP_CHAT, APPROVER, "Failed once, then retried")
    await _wait_status(db, tid, "failed")
    await fake.wait_for(lambda: "/retry " + tid[-8:] in progress_message(fake, GROUP_CHAT, tid)["text"],
                        what="the failure with the retry hint")
    assert "✗ Failed:" in progress_message(fake, GROUP_CHAT, tid)["text"]

    fake.send_text(GROUP_CHAT, NOT_APPROVER, f"/status {tid[-8:]}")
    await fake.wait_for(lambda: any("status: <b>failed</b>" in (m.get("text") or "") and f"/retry {tid[-8:]}" in m["text"]
                                    for m in fake.chat_messages(GROUP_CHAT)), what="/status of the failed post")
    fake.send_text(GROUP_CHAT, NOT_APPROVER, f"/retry {tid[-8:]}")
    await fake.wait_for(lambda: any((m.get("text") or "").startswith("⛔ Only approvers can retry")
                                    for m in fake.chat_messages(GROUP_CHAT)), what="the refusal")
    assert (await posts.get_post(db, tid))["status"] == "failed"

    fake.send_text(GROUP_CHAT, APPROVER, f"/retry {tid[-8:]}")
    gate = await gate_message(fake, GROUP_CHAT, tid)
    assert set(buttons(gate)) == {"approve", "revise", "reject", "edit", "edits", "at…"}
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
    retried = [e for e in await posts.list_events(db, tid) if e["kind"] == "retry"]
    assert [(e["from_status"], e["to_status"]) for e in retried] == [("failed", "researching")]
    assert any("retried by @user" in (m.get("text") or "") and thread_of(m) == tid
               for m in fake.chat_messages(GROUP_CHAT))
    runs = await service_client(approval_server.url).runs.list(tid)
    assert len(runs) == 2  # the /post run and the retry, both the server's (Studio shows them)

    fake.send_text(GROUP_CHAT, APPROVER, f"/retry {tid[-8:]}")  # waiting now, not failed
    await fake.wait_for(lambda: any((m.get("text") or "") == "Not failed (awaiting_approval). Nothing to retry."
                                    for m in fake.chat_messages(GROUP_CHAT)), what="the second /retry's answer")


async def test_long_drafts_are_split_or_sent_as_a_document(bot, fake_telegram, approval_script, db):
    fake = fake_telegram
    para = "Grouped-query attention lets several query heads share one key/value head, so the cache shrinks. " * 10
    approval_script.on_chat(lambda req: "# A long GQA draft\n\n" + "\n\n".join([para.strip()] * 9),  # ~9,000 chars
                            model=WRITER)
    tid = await start_post(fake, GROUP_CHAT, APPROVER, "A long draft in pieces")
    await gate_message(fake, GROUP_CHAT, tid)
    parts = [m for m in fake.chat_messages(GROUP_CHAT) if (m.get("text") or "").startswith("(draft v1, part ")]
    assert [p["text"].split(")")[0] for p in parts] == ["(draft v1, part 1/3", "(draft v1, part 2/3", "(draft v1, part 3/3"]
    assert all(tg_len(p["text"]) <= 4096 for p in parts)

    approval_script.on_chat(lambda req: "# A very long GQA draft\n\n" + "\n\n".join([para.strip()] * 30),  # ~30,000
                            model=WRITER)
    tid2 = await start_post(fake, GROUP_CHAT, APPROVER, "A draft too long for messages")
    await gate_message(fake, GROUP_CHAT, tid2)
    doc = next(m for m in fake.chat_messages(GROUP_CHAT) if m.get("document") and "A very long GQA draft" in m["caption"])
    content = fake.documents[doc["document"]["file_id"]].decode()
    assert doc["document"]["file_name"] == "draft-v1.md" and content.count(para.strip()) == 30
    for t in (tid, tid2):  # leave no open gates for the sweep test
        gate = await approvals.gates_for_thread(db, t)
        await decisions.decide(service_client(bot.bot_data["newsroom"].settings.agent_server_url), db,
                               gate[-1].gate_id, action="reject", text="test cleanup", reviewer="test", via="test")


# --- webhook mode (the route in the Agent Server's custom HTTP app) ------------------------------------------------

async def test_webhook_checks_the_secret_and_runs_the_same_handlers(approval_server, fake_telegram, approval_script,
                                                                    db):
    fake = fake_telegram
    url = f"{approval_server.url}/newsroom/telegram/webhook"
    before = len(fake.chat_messages(WEBHOOK_CHAT))  # other modules (the fuzz tests) share this chat
    update = fake.message_update(WEBHOOK_CHAT, APPROVER, "/post Webhook mode and the KV cache")
    async with httpx.AsyncClient(timeout=30) as http:
        wrong = await http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "guess"})
        missing = await http.post(url, json=update)
        assert wrong.status_code == 403 and missing.status_code == 403
        assert "secret" in wrong.json()["error"].lower()
        bad = await http.post(url, content=b"{not json", headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET})
        assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
        not_update = await http.post(url, json={"hello": 1}, headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET})
        assert not_update.status_code == 400 and "update_id" in not_update.json()["error"]
        assert not fake.chat_messages(WEBHOOK_CHAT)[before:], "a refused request must start nothing"

        ok = await http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET})
        assert ok.status_code == 200 and ok.json() == {"ok": True}
        # the handler ran before the 200: the progress message exists already
        progress = next(m for m in fake.chat_messages(WEBHOOK_CHAT)[before:] if thread_of(m))
        tid = thread_of(progress)
        gate = await gate_message(fake, WEBHOOK_CHAT, tid)
        press = fake.callback_update(WEBHOOK_CHAT, APPROVER, gate, buttons(gate)["approve"])
        again = fake.callback_update(WEBHOOK_CHAT, APPROVER, gate, buttons(gate)["approve"])
        # two deliveries at once (Telegram retries, or two approvers): the ledger lets one through
        r1, r2 = await asyncio.gather(
            http.post(url, json=press, headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}),
            http.post(url, json=again, headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}))
        assert r1.status_code == r2.status_code == 200
    await published_message(fake, WEBHOOK_CHAT)
    answers = [fake.callback_answers(p["callback_query"]["id"])[0]["text"] for p in (press, again)]
    assert sorted(a.split()[0] for a in answers) == ["Already", "✅"], answers
    assert len(decision_events(await posts.list_events(db, tid))) == 1
    assert (await posts.get_post(db, tid))["status"] == "published"


# --- the approval deadline ---------------------------------------------------------------------------------------

async def test_sweep_reminds_once_then_escalates_or_expires(bot, fake_telegram, approval_script, db):
    fake = fake_telegram
    server_url = bot.bot_data["newsroom"].settings.agent_server_url
    client = service_client(server_url)
    escalate_tid = await start_post(fake, GROUP_CHAT, APPROVER, "Waits too long, escalates")
    await gate_message(fake, GROUP_CHAT, escalate_tid)
    other_tid = await start_post(fake, GROUP_CHAT, APPROVER, "Waits too long as well")
    await gate_message(fake, GROUP_CHAT, other_tid)
    notifier = TelegramNotifier(bot.bot, bot_settings(fake.url, server_url))

    def settings(action: str) -> Settings:
        return bot_settings(fake.url, server_url, approval_deadline_s=0.01, approval_grace_s=0,
                            approval_expiry_action=action)

    def texts(tid: str) -> list[str]:
        return [m["text"] for m in fake.chat_messages(GROUP_CHAT) if f"thread {tid}" in (m.get("text") or "")]

    first = await sweep.sweep_once(client, db, settings("escalate"), notifier)
    assert {escalate_tid, other_tid} <= set(first.reminded)
    assert any(t.startswith("Reminder: draft v1") for t in texts(escalate_tid))
    second = await sweep.sweep_once(client, db, settings("escalate"), notifier)
    assert escalate_tid in second.escalated and escalate_tid not in second.reminded
    post = await posts.get_post(db, escalate_tid)
    assert post["status"] == "escalated" and post["status_reason"] == "approval deadline passed"
    assert any(t.startswith("Escalated: draft v1") for t in texts(escalate_tid))
    third = await sweep.sweep_once(client, db, settings("escalate"), notifier)
    assert escalate_tid not in third.reminded + third.escalated  # once each
    assert sum(t.startswith("Reminder") for t in texts(escalate_tid)) == 1
    # an escalated draft can still be approved from the reminder's buttons
    reminder = next(m for m in fake.chat_messages(GROUP_CHAT)
                    if (m.get("text") or "").startswith("Escalated") and f"thread {escalate_tid}" in m["text"])
    fake.press(GROUP_CHAT, APPROVER, reminder, buttons(reminder)["approve"])
    await _wait_status(db, escalate_tid, "published")

    expire_only = await start_post(fake, GROUP_CHAT, APPROVER, "Expires without a decision")
    await gate_message(fake, GROUP_CHAT, expire_only)
    for _ in range(2):
        report = await sweep.sweep_once(client, db, settings("expire"), notifier)
    assert expire_only in report.expired
    post = await _wait_status(db, expire_only, "rejected")
    assert post["status_reason"].startswith("approval expired")
    assert any(t.startswith("Expired: draft v1") for t in texts(expire_only))
    assert await posts.publications_for(db, expire_only) == []
    await decisions.decide(client, db, (await approvals.gates_for_thread(db, other_tid))[-1].gate_id,
                           action="reject", text="test cleanup", reviewer="test", via="test")


# --- Studio sees the same runs --------------------------------------------------------------------------------

async def test_studio_lists_telegram_runs_and_a_studio_resume_closes_the_buttons(
        bot, fake_telegram, approval_script, db):
    """Studio is a client of the same server API: thread search, state history, the pending interrupt,
    and a resume typed into Studio (the exact value docs/telegram-studio.md gives)."""
    fake = fake_telegram
    client = service_client(bot.bot_data["newsroom"].settings.agent_server_url)
    tid = await start_post(fake, GROUP_CHAT, APPROVER, "Seen from Studio")
    gate = await gate_message(fake, GROUP_CHAT, tid)
    listed = await client.threads.search(metadata={"source": "telegram", "chat_id": GROUP_CHAT}, limit=100)
    assert tid in [t["thread_id"] for t in listed]
    thread = await client.threads.get(tid)
    assert thread["status"] == "interrupted"
    history = await client.threads.get_history(tid, limit=50)
    assert len(history) >= 8 and history[0]["next"] == ["human_approval"]
    interrupts = [i for t in history[0]["tasks"] for i in t["interrupts"]]
    assert interrupts[0]["value"]["draft"]["version"] == 1
    assert interrupts[0]["value"]["resume_values"][0] == {"action": "approve"}
    # typed into Studio, which sends it with its approver credential: claimed in the ledger for them
    studio = approver_client(bot.bot_data["newsroom"].settings.agent_server_url, STUDIO_APPROVER_TOKEN)
    await studio.runs.wait(tid, "newsroom", command={"resume": {"action": "approve", "reviewer": "studio"}})
    assert (await posts.get_post(db, tid))["status"] == "published"
    late = fake.press(GROUP_CHAT, APPROVER, gate, buttons(gate)["approve"])
    await fake.wait_for(lambda: fake.callback_answers(late["callback_query"]["id"]), what="answer")
    assert "Already decided" in fake.callback_answers(late["callback_query"]["id"])[0]["text"]
    assert [e["actor"] for e in decision_events(await posts.list_events(db, tid))] == ["studio-user"]


async def test_a_draft_produced_in_studio_is_announced_in_its_chat(bot, fake_telegram, approval_script, db):
    """A revise typed in Studio makes v2 outside Telegram: the sweep announces it in the post's chat,
    once, with the buttons, and they decide it."""
    fake = fake_telegram
    server_url = bot.bot_data["newsroom"].settings.agent_server_url
    client = service_client(server_url)
    notifier = TelegramNotifier(bot.bot, bot_settings(fake.url, server_url))
    tid = await start_post(fake, GROUP_CHAT, APPROVER, "Revised from Studio")
    await gate_message(fake, GROUP_CHAT, tid)
    studio = approver_client(server_url, STUDIO_APPROVER_TOKEN)
    await studio.runs.wait(tid, "newsroom", command={"resume": {"action": "revise", "feedback": "tighter",
                                                                "reviewer": "studio"}})
    assert (await decisions.pending_interrupt(client, tid)).draft_version == 2

    def announced() -> list[dict]:
        return [m for m in fake.chat_messages(GROUP_CHAT)
                if (m.get("text") or "").startswith("📝 Draft v2") and f"thread {tid}" in m["text"]]

    quiet = bot_settings(fake.url, server_url, approval_deadline_s=3600)
    for _ in range(2):  # the first pass closes v1's gate, the next one finds v2
        await sweep.sweep_once(client, db, quiet, notifier)
    [message] = announced()
    assert "produced outside this chat" in message["text"] and f"/status {tid[-8:]}" in message["text"]
    await sweep.sweep_once(client, db, quiet, notifier)
    assert len(announced()) == 1  # once
    fake.press(GROUP_CHAT, APPROVER, message, buttons(message)["approve"])
    await _wait_status(db, tid, "published")
    assert next(e["actor"] for e in decision_events(await posts.list_events(db, tid))) == "studio-user"


async def test_sweep_command_discovers_runs_started_elsewhere(
        approval_server, fake_telegram, approval_script, db, pg_url):
    """`newsroom sweep` (the cron form): a run started through the API, not Telegram, gets its gate
    registered, with its deadline counted from when the post began waiting."""
    import os
    import sys
    import uuid

    client = service_client(approval_server.url)
    thread = await client.threads.create(metadata={"source": "api"})
    tid = thread["thread_id"]
    await client.runs.wait(tid, "newsroom", input={"topic": "Started from the API", "requester": "cron-test"})
    # posts the server has no thread for (a CLI run in-process; an id that is not a UUID) are skipped
    for cli_tid in (f"cli-run-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())):
        await posts.create_post(db, cli_tid, "An in-process CLI run", "cli-test", source="cli")
        for status in ("researching", "drafting", "editing", "awaiting_approval"):
            await posts.transition(db, cli_tid, status, actor="test")
    env = dict(os.environ, DATABASE_URL=pg_url, NEWSROOM_AGENT_SERVER_URL=approval_server.url,
               TELEGRAM_BOT_TOKEN=TOKEN, NEWSROOM_TELEGRAM_API_BASE_URL=fake_telegram.url,
               NEWSROOM_APPROVAL_DEADLINE_S="3600", NEWSROOM_SERVICE_TOKEN=SERVICE_TOKEN)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "service.cli", "sweep", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert re.search(r"approval sweep: discovered [1-9]\d*, reminded 0", out.decode()), out.decode()
    gates = await approvals.gates_for_thread(db, tid)
    assert len(gates) == 1 and not gates[0].decided and gates[0].chat_id is None
    post = await posts.get_post(db, tid)
    assert abs((gates[0].waiting_since - post["updated_at"]).total_seconds()) < 1
    await decisions.decide(client, db, gates[0].gate_id, action="reject", text="test cleanup", reviewer="test", via="test")
