"""Multi-step human-approval flows, in-process: several decisions on one thread."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.runner import NothingToResume, current, resume, start_post
from storage import posts
from tests.approval_fixtures import (
    InProcessServer,
    ProcessKilled,
    die_before_the_resume_starts,
    polling_bot,
    resume_in_process,
)
from tests.engine_fixtures import FAILING, JUDGE, PASSING, WRITER
from tests.server_fixtures import service_client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def tg_bot(approval_server, fake_telegram, db):
    """`newsroom bot`'s Application polling the fake Bot API (as tests/e2e/test_telegram_bot.py's `bot`)."""
    async with polling_bot(fake_telegram.url, approval_server.url) as app:
        yield app


async def _events(db, tid, kind=None):
    return [e for e in await posts.list_events(db, tid) if kind is None or e["kind"] == kind]


def _numbered_writer(llm):
    """Drafts titled 'Draft N' by call order."""
    n = {"i": 0}

    def reply(req):
        n["i"] += 1
        return f"# Draft {n['i']}\n\nGrouped-query attention shares KV heads [1]. call {n['i']}"

    llm.on_chat(reply, model=WRITER)


async def test_revise_revise_approve_publishes_v3_once(db, llm):
    llm.reset()
    _numbered_writer(llm)
    llm.on_chat(lambda req: PASSING, model=JUDGE)
    snap = await start_post("Revise twice then approve")
    tid = snap.thread_id
    assert snap.interrupt["draft"]["version"] == 1
    s2 = await resume(tid, {"action": "revise", "feedback": "first feedback", "reviewer": "r1"})
    assert s2.waiting_for_human and s2.interrupt["draft"]["version"] == 2
    s3 = await resume(tid, {"action": "revise", "feedback": "second feedback", "reviewer": "r2"})
    assert s3.waiting_for_human and s3.interrupt["draft"]["version"] == 3
    assert any("second feedback" in r.prompt for r in llm.requests_for(WRITER))
    done = await resume(tid, {"action": "approve", "reviewer": "r3"})
    assert done.values["outcome"] == "published"
    v3_title = s3.interrupt["draft"]["title"]
    assert v3_title not in (snap.interrupt["draft"]["title"], s2.interrupt["draft"]["title"])
    assert done.values["publication"]["title"] == v3_title
    assert [(d["decision"], d["draft_version"]) for d in done.values["decisions"]] == \
        [("revise", 1), ("revise", 2), ("approve", 3)]
    pubs = await posts.publications_for(db, tid)
    assert len(pubs) == 1 and pubs[0]["title"] == v3_title
    decisions = await _events(db, tid, "human_decision")
    assert [(e["actor"], e["detail"]["decision"], e["detail"]["draft_version"]) for e in decisions] == \
        [("r1", "revise", 1), ("r2", "revise", 2), ("r3", "approve", 3)]
    assert len({e["detail"]["checkpoint_id"] for e in decisions}) == 3
    path = [(e["from_status"], e["to_status"]) for e in await _events(db, tid, "transition")]
    assert path == [("queued", "researching"), ("researching", "drafting"), ("drafting", "editing"),
                    ("editing", "awaiting_approval"),
                    ("awaiting_approval", "drafting"), ("drafting", "editing"), ("editing", "awaiting_approval"),
                    ("awaiting_approval", "drafting"), ("drafting", "editing"), ("editing", "awaiting_approval"),
                    ("awaiting_approval", "publishing"), ("publishing", "published")]
    row = await posts.get_post(db, tid)
    calls = await posts.llm_calls_for(db, tid)
    assert row["llm_calls"] == len(calls)
    assert row["tokens_in"] == sum(c["tokens_in"] for c in calls)
    assert row["tokens_out"] == sum(c["tokens_out"] for c in calls)
    with pytest.raises(NothingToResume, match="already decided: published"):
        await resume(tid, {"action": "approve"})
    assert len(await posts.publications_for(db, tid)) == 1


async def test_revise_then_reject(db, llm):
    snap = await start_post("Revise then reject")
    tid = snap.thread_id
    s2 = await resume(tid, {"action": "revise", "feedback": "more numbers"})
    assert s2.interrupt["draft"]["version"] == 2
    done = await resume(tid, {"action": "reject", "reason": "still off", "reviewer": "z"})
    assert done.values["outcome"] == "rejected" and not done.next
    row = await posts.get_post(db, tid)
    assert row["status"] == "rejected" and row["status_reason"] == "still off"
    assert await posts.publications_for(db, tid) == []
    with pytest.raises(NothingToResume):
        await resume(tid, "approve")


async def test_escalation_revise_approve(db, llm):
    llm.reset()
    _numbered_writer(llm)
    verdicts = iter([FAILING, FAILING, FAILING, FAILING, PASSING])
    llm.on_chat(lambda req: next(verdicts), model=JUDGE)
    snap = await start_post("Escalate, revise, approve", overrides={"max_revisions": 3})
    tid = snap.thread_id
    assert snap.interrupt["escalated"] is True and snap.interrupt["draft"]["version"] == 4
    assert (await posts.get_post(db, tid))["status"] == "escalated"
    s2 = await resume(tid, {"action": "revise", "feedback": "fix accuracy"})
    assert s2.waiting_for_human and s2.interrupt["draft"]["version"] == 5
    assert s2.interrupt["escalated"] is False and s2.interrupt["editor_decision"] == "approve"
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
    done = await resume(tid, "approve")
    assert done.values["outcome"] == "published" and done.values["publication"]["title"] == s2.interrupt["draft"]["title"]
    assert len(await posts.publications_for(db, tid)) == 1


async def test_invalid_verdict_escalation_revise_approve(db, llm):
    """Escalated because the judge's verdict did not validate: the human's revise goes to the
    writer, the new draft is judged again (validly) and waits as a normal approval, then publishes."""
    verdicts = iter(["not json {"] * 3 + [PASSING])
    llm.on_chat(lambda req: next(verdicts), model=JUDGE)
    snap = await start_post("Judge garbage, then revise", overrides={"judge_max_attempts": 3})
    tid = snap.thread_id
    assert snap.interrupt["escalated"] is True and "did not validate" in snap.interrupt["escalation_reason"]
    assert (await posts.get_post(db, tid))["status"] == "escalated"
    s2 = await resume(tid, {"action": "revise", "feedback": "tighten it"})
    assert s2.interrupt["draft"]["version"] == 2 and s2.interrupt["escalated"] is False
    assert s2.values["drafts"][-1]["reason"] == "human_feedback" and s2.interrupt["revision"] == 0
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
    done = await resume(tid, "approve")
    assert done.values["outcome"] == "published" and len(await posts.publications_for(db, tid)) == 1


async def test_escalation_revise_still_failing_escalates_again(db, llm):
    llm.on_chat(lambda req: FAILING, model=JUDGE)
    snap = await start_post("Escalate, revise, still bad", overrides={"max_revisions": 1})
    tid = snap.thread_id
    assert snap.interrupt["escalated"] is True and snap.interrupt["draft"]["version"] == 2
    s2 = await resume(tid, {"action": "revise", "feedback": "fix it"})
    assert s2.waiting_for_human and s2.interrupt["escalated"] is True
    assert s2.interrupt["draft"]["version"] == 3
    assert (await posts.get_post(db, tid))["status"] == "escalated"
    done = await resume(tid, "approve")
    assert done.values["outcome"] == "published"
    pubs = await posts.publications_for(db, tid)
    d = s2.interrupt["draft"]  # the escalated v3 is what was published
    assert len(pubs) == 1 and pubs[0]["draft_hash"] == hashlib.sha256(f"{d['title']}\n\n{d['body']}".encode()).hexdigest()


async def test_invalid_resume_then_valid(db, llm):
    snap = await start_post("Invalid then valid")
    tid = snap.thread_id
    s2 = await resume(tid, {"action": "maybe"})
    assert s2.waiting_for_human and s2.interrupt["draft"]["version"] == 1
    assert len(await _events(db, tid, "invalid_resume")) == 1
    s3 = await resume(tid, {"action": "revise"})  # no feedback: invalid
    assert s3.waiting_for_human and s3.interrupt["draft"]["version"] == 1
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
    done = await resume(tid, "approve")
    assert done.values["outcome"] == "published"
    assert len(await _events(db, tid, "human_decision")) == 1
    assert len(await posts.publications_for(db, tid)) == 1


async def test_invalid_answer_after_the_sweep_escalated_the_post(db, llm):
    """The deadline sweep escalated a waiting post; then an invalid answer (Studio) made the gate
    ask again. That used to crash the run (illegal transition escalated -> awaiting_approval) and
    strand the thread: nothing waited for approval, so it could be neither approved nor rejected."""
    snap = await start_post("Overdue, then an invalid answer")
    tid = snap.thread_id
    # what service.sweep._sweep_gate does to a post whose approval deadline and grace passed
    await posts.transition(db, tid, "escalated", actor="sweep", reason="approval deadline passed")
    again = await resume(tid, {"action": "maybe"})
    assert again.waiting_for_human and again.interrupt["draft"]["version"] == 1
    row = await posts.get_post(db, tid)
    assert row["status"] == "escalated" and row["status_reason"] == "approval deadline passed"
    done = await resume(tid, {"action": "approve", "reviewer": "late"})
    assert done.values["outcome"] == "published"
    assert len(await posts.publications_for(db, tid)) == 1
    path = [(e["from_status"], e["to_status"]) for e in await _events(db, tid, "transition")]
    assert path[-3:] == [("awaiting_approval", "escalated"), ("escalated", "publishing"), ("publishing", "published")]


async def test_status_json_and_list_across_steps(db, llm, pg_url):
    env = dict(os.environ, DATABASE_URL=pg_url)

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    snap = await start_post("Status after each step")
    tid = snap.thread_id
    s1 = json.loads(cli("status", tid, "--json"))
    assert s1["post"]["status"] == "awaiting_approval"
    calls1 = s1["post"]["llm_calls"]
    await resume(tid, {"action": "revise", "feedback": "again"})
    s2 = json.loads(cli("status", tid, "--json"))
    assert s2["post"]["status"] == "awaiting_approval"
    assert s2["post"]["llm_calls"] == len(s2["llm_calls"]) > calls1
    assert [e["detail"]["decision"] for e in s2["events"] if e["kind"] == "human_decision"] == ["revise"]
    cli("approve", tid, "--reviewer", "dora")
    s3 = json.loads(cli("status", tid, "--json"))
    assert s3["post"]["status"] == "published" and len(s3["publications"]) == 1
    assert s3["post"]["llm_calls"] == len(s3["llm_calls"]) == s2["post"]["llm_calls"]
    assert [e["detail"]["decision"] for e in s3["events"] if e["kind"] == "human_decision"] == ["revise", "approve"]
    listing = cli("list", "--limit", "200")
    line = next(ln for ln in listing.splitlines() if ln.startswith(tid))
    assert "published" in line


async def test_claimed_approve_on_v2_after_a_revise_is_redelivered(db, llm):
    """Revise on v1 through a channel (applied), then approve on v2 claimed and lost in a crash:
    recovery delivers that approve to the v2 gate, not the old revise, and publishes v2 once."""
    from service.decisions import decide
    from service.recovery import recover
    from storage import approvals

    server = InProcessServer()
    snap = await start_post("Revise applied, approve lost")
    tid = snap.thread_id
    g1 = await approvals.register_gate(db, thread_id=tid, interrupt_id=snap.interrupt_id, draft_version=1)
    r1 = await decide(server, db, g1.gate_id, action="revise", text="add numbers", reviewer="ann", via="web",
                      start_run=resume_in_process)
    assert r1.resumed
    v2 = await current(tid)
    assert v2.waiting_for_human and v2.interrupt["draft"]["version"] == 2 and v2.interrupt_id != snap.interrupt_id
    # the v1 gate is decided: pressing it again says so and resumes nothing
    again = await decide(server, db, g1.gate_id, action="approve", text=None, reviewer="bob", via="web",
                         start_run=resume_in_process)
    assert again.outcome == "already_decided"
    # a recovery pass now has nothing to do: the applied revise is not delivered a second time
    idle = await recover(thread_ids=[tid])
    assert idle.acted == 0 and idle.waiting == [tid]
    g2 = await approvals.register_gate(db, thread_id=tid, interrupt_id=v2.interrupt_id, draft_version=2)
    with pytest.raises(ProcessKilled):
        await decide(server, db, g2.gate_id, action="approve", text=None, reviewer="cid", via="telegram",
                     start_run=die_before_the_resume_starts)
    assert (await current(tid)).waiting_for_human
    report = await recover(thread_ids=[tid])
    assert report.redelivered == [tid] and report.errors == {} and report.outcomes[tid] == "published"
    done = await current(tid)
    assert [(d["decision"], d["draft_version"], d["reviewer"]) for d in done.values["decisions"]] == \
        [("revise", 1, "ann"), ("approve", 2, "cid")]
    pubs = await posts.publications_for(db, tid)
    assert len(pubs) == 1 and pubs[0]["title"] == v2.interrupt["draft"]["title"]
    assert (await recover(thread_ids=[tid])).acted == 0
    assert len(await posts.publications_for(db, tid)) == 1


async def test_a_channel_answers_a_draft_asked_again_after_an_invalid_answer(db, llm):
    """Studio (or the CLI) sent an invalid value: the graph asks again about the SAME draft at a new
    interrupt. The buttons shown for that draft still decide it (they used to answer "Already
    decided ... answered elsewhere" and went dead, though nobody had decided), exactly once."""
    from service.decisions import Outcome, decide
    from storage import approvals

    server = InProcessServer()
    snap = await start_post("Invalid in Studio, then a button press")
    tid = snap.thread_id
    g1 = await approvals.register_gate(db, thread_id=tid, interrupt_id=snap.interrupt_id, draft_version=1,
                                       chat_id=-42)
    await approvals.add_gate_messages(db, g1.gate_id, [11, 12])
    asked_again = await resume(tid, {"action": "maybe"})
    assert asked_again.interrupt["draft"]["version"] == 1 and asked_again.interrupt_id != snap.interrupt_id
    result = await decide(server, db, g1.gate_id, action="approve", text=None, reviewer="tg-user", via="telegram",
                          start_run=resume_in_process)
    assert result.outcome == Outcome.RESUMED, result.message
    # the decision was taken on the gate of the interrupt that waited, with the old gate's messages
    assert result.gate.interrupt_id == asked_again.interrupt_id and result.gate.decision == "approve"
    assert result.gate.message_ids == [11, 12] and result.gate.chat_id == -42
    old = await approvals.get_gate(db, g1.gate_id)
    assert old.decision == "superseded" and old.decided_via == "reasked"
    assert (await current(tid)).values["outcome"] == "published"
    events = await _events(db, tid, "human_decision")
    assert [(e["actor"], e["detail"]["decision"]) for e in events] == [("tg-user", "approve")]
    # a second press on the old buttons decides nothing more
    again = await decide(server, db, g1.gate_id, action="approve", text=None, reviewer="other", via="telegram",
                         start_run=resume_in_process)
    assert again.outcome == Outcome.ALREADY_DECIDED
    assert len(await posts.publications_for(db, tid)) == 1


async def test_a_claim_made_through_a_reasked_gate_is_recovered(db, llm):
    """The answer given on the old buttons is claimed on the gate of the interrupt that waits, so
    if the channel dies before the resume runs, recovery re-delivers it (with its feedback)."""
    from service.decisions import decide
    from service.recovery import recover
    from storage import approvals

    snap = await start_post("Reasked, claimed, then a crash")
    tid = snap.thread_id
    g1 = await approvals.register_gate(db, thread_id=tid, interrupt_id=snap.interrupt_id, draft_version=1)
    await resume(tid, "neither")
    with pytest.raises(ProcessKilled):
        await decide(InProcessServer(), db, g1.gate_id, action="revise", text="cite the GQA paper", reviewer="kim",
                     via="web", start_run=die_before_the_resume_starts)
    report = await recover(thread_ids=[tid])
    assert report.redelivered == [tid] and report.errors == {}
    after = await current(tid)
    assert after.waiting_for_human and after.interrupt["draft"]["version"] == 2
    d = after.values["decisions"][-1]
    assert (d["decision"], d["feedback"], d["reviewer"]) == ("revise", "cite the GQA paper", "kim")


async def test_the_sweep_hands_a_reasked_draft_to_its_new_gate(db, llm):
    """The deadline sweep does not close a draft asked again as 'answered elsewhere': the new
    interrupt's gate takes over, still open, with the draft's waiting time and messages."""
    from config import get_settings
    from service.sweep import sweep_once
    from storage import approvals

    snap = await start_post("Invalid answer, then the sweep")
    tid = snap.thread_id
    g1 = await approvals.register_gate(db, thread_id=tid, interrupt_id=snap.interrupt_id, draft_version=1)
    await approvals.add_gate_messages(db, g1.gate_id, [7])
    asked_again = await resume(tid, "not a decision")
    await sweep_once(InProcessServer(), db, get_settings())
    gates = {g.interrupt_id: g for g in await approvals.gates_for_thread(db, tid)}
    assert gates[snap.interrupt_id].decided_via == "reasked"
    new = gates[asked_again.interrupt_id]
    assert not new.decided and new.message_ids == [7] and new.waiting_since == g1.waiting_since


async def test_the_sweep_leaves_a_gate_alone_when_its_server_cannot_see_the_thread(db, llm):
    """Two servers on one database: the one that did not run a thread answers 404 for it. Its sweep
    must not close that thread's gate (the buttons would go dead while the post still waits)."""
    import httpx

    from config import get_settings
    from service.sweep import sweep_once
    from storage import approvals

    class _OtherServer:
        def __init__(self):
            self.threads = self

        async def get_state(self, thread_id):
            response = httpx.Response(404, request=httpx.Request("GET", f"http://other/threads/{thread_id}/state"))
            raise httpx.HTTPStatusError("thread not found", request=response.request, response=response)

    snap = await start_post("Waiting, seen by another server")
    gate = await approvals.register_gate(db, thread_id=snap.thread_id, interrupt_id=snap.interrupt_id, draft_version=1)
    await sweep_once(_OtherServer(), db, get_settings())
    assert not (await approvals.get_gate(db, gate.gate_id)).decided
    # The CLI's answer goes through the ledger too: it claims that very gate, and the sweep leaves
    # a decided gate as it is.
    await resume(snap.thread_id, {"action": "reject", "reason": "done", "reviewer": "cli"})
    await sweep_once(InProcessServer(), db, get_settings())
    closed = await approvals.get_gate(db, gate.gate_id)
    assert (closed.decision, closed.decided_via, closed.resumed_at is not None) == ("reject", "cli", True)


# --- channels: Telegram (fake Bot API + real PTB + real `newsroom serve`) and the web routes -----------------

async def _status_reply(fake, chat, user, tid, expect: str) -> dict:
    from tests.e2e.test_telegram_bot import thread_of  # noqa: F401 - same helpers as the bot tests

    before = {m["message_id"] for m in fake.chat_messages(chat)}
    fake.send_text(chat, user, f"/status {tid[-8:]}")
    return await fake.wait_for(lambda: next((m for m in fake.chat_messages(chat) if m["message_id"] not in before
                                             and tid in (m.get("text") or "") and "status: <b>" in m["text"]), None),
                               what=f"/status reply ({expect})")


@pytest.mark.slow
async def test_telegram_revise_then_approve_v2_publishes_v2(tg_bot, approval_server, fake_telegram,
                                                            approval_script, db):

    from tests.approval_fixtures import APPROVER, APPROVER_2, GROUP_CHAT, NOT_APPROVER
    from tests.e2e.test_telegram_bot import (
        _wait_status,
        buttons,
        decision_events,
        gate_message,
        published_message,
    )
    from tests.e2e.test_telegram_bot import (
        start_post as tg_start,
    )

    fake = fake_telegram
    approval_script.reset()
    approval_script.on_chat(lambda req: (
        "# GQA, revised\n\nWith 32 query heads and 8 KV heads the cache shrinks 4x [1]."
        if "From the human reviewer" in req.prompt else
        "# GQA and the KV cache\n\nGrouped-query attention shares key/value heads [1]."), model=WRITER)
    approval_script.on_chat(lambda req: PASSING, model=JUDGE)
    tid = await tg_start(fake, GROUP_CHAT, APPROVER, "Revise then approve on Telegram")
    gate1 = await gate_message(fake, GROUP_CHAT, tid)
    s1 = await _status_reply(fake, GROUP_CHAT, NOT_APPROVER, tid, "v1 waiting")
    assert "status: <b>awaiting_approval</b>" in s1["text"]
    # someone answers v1 in Studio with a value the gate does not accept: it asks again about v1
    await service_client(approval_server.url).runs.wait(tid, "newsroom", command={"resume": {"action": "maybe"}})
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
    # ...and v1's Telegram buttons still work (they used to answer "Already decided")
    press = fake.press(GROUP_CHAT, APPROVER, gate1, buttons(gate1)["revise"])
    await fake.wait_for(lambda: fake.callback_answers(press["callback_query"]["id"]), what="the revise answer")
    assert "Reply to my question" in fake.callback_answers(press["callback_query"]["id"])[0]["text"]
    question = await fake.wait_for(lambda: next((m for m in fake.chat_messages(GROUP_CHAT)
                                                 if (m.get("text") or "").startswith("✏️ What should the writer change?")
                                                 and tid[-8:] in m["text"]), None), what="the feedback question")
    fake.send_text(GROUP_CHAT, APPROVER, "Give the head counts.", reply_to=question)
    gate2 = await gate_message(fake, GROUP_CHAT, tid, version=2)
    assert "GQA, revised" in gate2["text"] and buttons(gate2)["approve"] != buttons(gate1)["approve"]
    assert "reply_markup" not in fake.messages[(GROUP_CHAT, gate1["message_id"])]  # v1's buttons taken off
    s2 = await _status_reply(fake, GROUP_CHAT, NOT_APPROVER, tid, "v2 waiting")
    assert "status: <b>awaiting_approval</b>" in s2["text"]
    # every button of v1 is over now (approve, revise, reject)
    for action in ("approve", "revise", "reject"):
        old = fake.press(GROUP_CHAT, APPROVER_2, gate1, buttons(gate1)[action])
        await fake.wait_for(lambda old=old: fake.callback_answers(old["callback_query"]["id"]), what=f"old {action} answer")
        assert "Already decided" in fake.callback_answers(old["callback_query"]["id"])[0]["text"], action
    # the stale ForceReply question of v1 decides nothing either
    fake.send_text(GROUP_CHAT, APPROVER, "late feedback for v1", reply_to=question)
    await fake.wait_for(lambda: any((m.get("text") or "").startswith("Already decided")
                                    for m in fake.chat_messages(GROUP_CHAT)), what="the late reply's refusal")
    # approve v2 from the message /status re-sent (its buttons are v2's gate too)
    resent = [m for m in fake.chat_messages(GROUP_CHAT) if "Draft v2 ready" in (m.get("text") or "")
              and tid in m["text"] and buttons(m)][-1]
    assert resent["message_id"] != gate2["message_id"] and buttons(resent) == buttons(gate2)
    fake.press(GROUP_CHAT, APPROVER_2, resent, buttons(resent)["approve"])
    await published_message(fake, GROUP_CHAT, title="GQA, revised")
    post = await _wait_status(db, tid, "published")
    assert [(d["detail"]["decision"], d["detail"]["draft_version"]) for d in decision_events(
        await posts.list_events(db, tid))] == [("revise", 1), ("approve", 2)]
    assert len([e for e in await posts.list_events(db, tid) if e["kind"] == "invalid_resume"]) == 1
    pubs = await posts.publications_for(db, tid)
    assert len(pubs) == 1 and pubs[0]["title"] == "GQA, revised"
    assert post["llm_calls"] == len(await posts.llm_calls_for(db, tid))
    s3 = await _status_reply(fake, GROUP_CHAT, NOT_APPROVER, tid, "published")
    assert "status: <b>published</b>" in s3["text"] and pubs[0]["location"] in s3["text"]
    # v2's buttons are over too
    late = fake.press(GROUP_CHAT, APPROVER, gate2, buttons(gate2)["approve"])
    await fake.wait_for(lambda: fake.callback_answers(late["callback_query"]["id"]), what="late v2 answer")
    assert "Already decided" in fake.callback_answers(late["callback_query"]["id"])[0]["text"]
    await asyncio.sleep(0.5)
    assert len(await posts.publications_for(db, tid)) == 1


@pytest.mark.slow
async def test_web_revise_then_approve_publishes_v2(approval_server, approval_script, db):
    import httpx

    from tests.approval_fixtures import WEB_TOKEN

    approval_script.reset()
    approval_script.on_chat(lambda req: (
        "# Web revised\n\nNow with the arithmetic [1]." if "From the human reviewer" in req.prompt else
        "# GQA and the KV cache\n\nGrouped-query attention shares key/value heads [1]."), model=WRITER)
    approval_script.on_chat(lambda req: PASSING, model=JUDGE)
    client = service_client(approval_server.url)
    thread = await client.threads.create(metadata={"source": "web-test"})
    tid = thread["thread_id"]
    await client.runs.wait(tid, "newsroom", input={"topic": "Web revise then approve", "requester": "w", "source": "api"})
    base = f"{approval_server.url}/newsroom/ui"
    auth = {"Authorization": f"Bearer {WEB_TOKEN}"}

    async def gate_on_page(http, version: int) -> str:
        for _ in range(300):
            page = await http.get(f"{base}/runs/{tid}", headers=auth)
            if f"Draft v{version} waits for approval" in page.text:
                return page.text.split("name=gate_id value='")[1].split("'")[0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"v{version} never waited on the page")

    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
        g1 = await gate_on_page(http, 1)
        r = await http.post(f"{base}/runs/{tid}/decide", headers=auth,
                            data={"action": "revise", "gate_id": g1, "feedback": "show the arithmetic", "reviewer": "wa"})
        assert r.status_code == 303 and "Sent back" in (await http.get(approval_server.url + r.headers["location"],
                                                                        headers=auth)).text
        g2 = await gate_on_page(http, 2)
        assert g2 != g1
        stale = await http.post(f"{base}/runs/{tid}/decide", headers=auth, data={"action": "approve", "gate_id": g1})
        assert "Already decided" in (await http.get(approval_server.url + stale.headers["location"],
                                                    headers=auth)).text
        ok = await http.post(f"{base}/runs/{tid}/decide", headers=auth,
                             data={"action": "approve", "gate_id": g2, "reviewer": "wb"})
        assert ok.status_code == 303 and "Approved" in (await http.get(approval_server.url + ok.headers["location"],
                                                                        headers=auth)).text
        for _ in range(300):
            if (await posts.get_post(db, tid))["status"] == "published":
                break
            await asyncio.sleep(0.1)
        page = await http.get(f"{base}/runs/{tid}", headers=auth)
        assert "id=status>published<" in page.text and "id=publication" in page.text and "id=approve" not in page.text
    pubs = await posts.publications_for(db, tid)
    assert len(pubs) == 1 and pubs[0]["title"] == "Web revised"
    assert [(e["actor"], e["detail"]["decision"]) for e in await _events(db, tid, "human_decision")] == \
        [("wa (web)", "revise"), ("wb (web)", "approve")]


async def test_an_answer_for_a_draft_that_changed_lands_nowhere(db, llm, monkeypatch):
    """The CLI reviewer read v1; meanwhile another channel asked for a revision and v2 now waits.
    `approve --version 1` is refused, and even an answer that passed its check just before the other
    decision landed (the race) is keyed to v1's interrupt: it publishes nothing."""
    from service import runner
    from service.runner import DraftChanged

    llm.reset()
    _numbered_writer(llm)
    llm.on_chat(lambda req: PASSING, model=JUDGE)
    snap = await start_post("An answer that arrives late")
    tid = snap.thread_id
    stale = await current(tid)  # what the slow reviewer checked
    v2 = await resume(tid, {"action": "revise", "feedback": "more numbers", "reviewer": "fast"})
    assert v2.interrupt["draft"]["version"] == 2

    with pytest.raises(DraftChanged, match="waits at draft v2, not v1"):
        await resume(tid, {"action": "approve", "reviewer": "slow"}, expected_version=1)

    async def checked_before_the_other_decision(thread_id):
        return stale

    monkeypatch.setattr(runner.engine, "view", checked_before_the_other_decision)
    with pytest.raises(DraftChanged, match="decided elsewhere"):
        await resume(tid, {"action": "approve", "reviewer": "slow"})
    monkeypatch.undo()
    after = await current(tid)
    assert after.waiting_for_human and after.interrupt["draft"]["version"] == 2  # still waiting for v2's answer
    assert await posts.publications_for(db, tid) == []
    assert [e["actor"] for e in await _events(db, tid, "human_decision")] == ["fast"]
    done = await resume(tid, {"action": "approve", "reviewer": "slow"}, expected_version=2)
    assert done.values["outcome"] == "published"
    assert done.values["publication"]["title"] == v2.interrupt["draft"]["title"]  # the draft the reviewer read
