"""The engine end to end, in-process, on embedded PostgreSQL and a scripted LLM over real HTTP."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.runner import NothingToResume, current, resume, start_post
from storage import posts
from tests.engine_fixtures import FAILING, JUDGE, PASSING, WRITER

ROOT = Path(__file__).resolve().parents[2]


async def _events(db, tid, kind=None):
    return [e for e in await posts.list_events(db, tid) if kind is None or e["kind"] == kind]


async def test_approve_publishes_once(db, llm, tmp_path):
    snap = await start_post("How GQA shrinks the KV cache", requester="alice")
    assert snap.waiting_for_human and snap.next == ("human_approval",)
    p = snap.interrupt
    assert p["escalated"] is False and p["scores"]["technical_accuracy"] == 4 and p["revision"] == 0
    assert p["draft"]["title"] == "GQA and the KV cache"
    assert (await posts.get_post(db, snap.thread_id))["status"] == "awaiting_approval"

    done = await resume(snap.thread_id, {"action": "approve", "reviewer": "bob"})
    assert done.values["outcome"] == "published"
    pub = done.values["publication"]
    html = Path(pub["location"])
    assert html.exists() and "GQA and the KV cache" in html.read_text()
    assert html.with_suffix(".md").read_text().startswith("---\ntitle: \"GQA and the KV cache\"")
    row = await posts.get_post(db, snap.thread_id)
    assert row["status"] == "published"
    assert len(await posts.publications_for(db, snap.thread_id)) == 1
    decision = (await _events(db, snap.thread_id, "human_decision"))[0]
    assert decision["actor"] == "bob" and decision["detail"]["decision"] == "approve"
    assert len(decision["detail"]["payload_hash"]) == 64 and decision["detail"]["checkpoint_id"] == snap.checkpoint_id
    # the whole path is in the audit log
    path = [(e["from_status"], e["to_status"]) for e in await _events(db, snap.thread_id, "transition")]
    assert path == [("queued", "researching"), ("researching", "drafting"), ("drafting", "editing"),
                    ("editing", "awaiting_approval"), ("awaiting_approval", "publishing"), ("publishing", "published")]
    # approving again changes nothing
    with pytest.raises(NothingToResume, match="already decided: published"):
        await resume(snap.thread_id, {"action": "approve"})
    assert len(await posts.publications_for(db, snap.thread_id)) == 1
    # usage was accounted per post
    assert row["llm_calls"] >= 3 and row["tokens_in"] > 0


async def test_revise_sends_human_feedback_to_the_writer(db, llm):
    snap = await start_post("KV cache arithmetic")
    llm.reset()
    llm.on_chat(lambda req: "# Revised\n\nNow with numbers: 8 KV heads instead of 64.", model=WRITER)
    llm.on_chat(lambda req: PASSING, model=JUDGE)
    snap2 = await resume(snap.thread_id, {"action": "revise", "feedback": "add concrete head counts"})
    assert snap2.waiting_for_human
    assert snap2.interrupt["draft"]["version"] == 2 and snap2.interrupt["draft"]["title"] == "Revised"
    writer_prompts = [r.prompt for r in llm.requests_for(WRITER)]
    assert any("add concrete head counts" in p for p in writer_prompts)
    assert len(llm.requests_for(JUDGE)) == 1  # the new draft went through the Editor again
    assert snap2.values["drafts"][-1]["reason"] == "human_feedback"
    assert (await posts.get_post(db, snap.thread_id))["status"] == "awaiting_approval"
    # ...and the human's next answer on the same thread counts: revise, then approve, publishes v2.
    done = await resume(snap.thread_id, {"action": "approve", "reviewer": "carol"})
    assert done.values["outcome"] == "published" and not done.next
    assert [d["decision"] for d in done.values["decisions"]] == ["revise", "approve"]
    assert done.values["publication"]["title"] == "Revised"


async def test_reject_publishes_nothing(db, llm):
    snap = await start_post("A topic to reject")
    done = await resume(snap.thread_id, {"action": "reject", "reason": "off-topic"})
    assert done.values["outcome"] == "rejected" and not done.next
    row = await posts.get_post(db, snap.thread_id)
    assert row["status"] == "rejected" and row["status_reason"] == "off-topic"
    assert await posts.publications_for(db, snap.thread_id) == []


async def test_three_failing_verdicts_escalate(db, llm):
    llm.on_chat(lambda req: FAILING, model=JUDGE)
    snap = await start_post("Something the judge never likes")
    assert snap.waiting_for_human
    p = snap.interrupt
    assert p["escalated"] is True and p["revision"] == 3 and p["draft"]["version"] == 4
    assert "revision" in p["escalation_reason"]
    assert len(llm.requests_for(JUDGE)) == 4 and len(llm.requests_for(WRITER)) >= 4
    # the Editor's per-dimension feedback reached the writer
    assert any("technical_accuracy 2/5" in r.prompt for r in llm.requests_for(WRITER))
    assert (await posts.get_post(db, snap.thread_id))["status"] == "escalated"
    # a human can still approve an escalated draft
    done = await resume(snap.thread_id, "approve")
    assert done.values["outcome"] == "published"


@pytest.mark.parametrize("bad", [
    {"technical_accuracy": 5, "calibration": 1234567890, "mechanistic_depth": 5, "audience_calibration": 5,
     "flag": "none", "reasoning": {}},
    "not json at all {",
    {"technical_accuracy": 5, "calibration": 5},
])
async def test_invalid_judge_output_never_approves(db, llm, bad):
    llm.on_chat(lambda req: bad, model=JUDGE)
    # even in the autonomous policy, an invalid verdict must wait for a person
    snap = await start_post("Judge emits garbage", overrides={"approval_policy": "escalations_only"})
    assert snap.waiting_for_human and snap.interrupt["escalated"] is True
    assert snap.interrupt["scores"] is None and "did not validate" in snap.interrupt["escalation_reason"]
    assert snap.values["reviews"][-1]["decision"] == "invalid"
    assert await posts.publications_for(db, snap.thread_id) == []


async def test_escalations_only_publishes_approved_drafts_directly(db, llm):
    snap = await start_post("Autonomous post", overrides={"approval_policy": "escalations_only"})
    assert not snap.waiting_for_human and snap.values["outcome"] == "published"


async def test_escalations_only_returns_a_human_revised_draft_to_the_human(db, llm):
    """Escalated, then revised by a person: the judge approving the new draft must not publish it
    unseen under escalations_only; it waits for the person who asked for the change."""
    llm.on_chat(lambda req: FAILING, model=JUDGE)
    snap = await start_post("Escalated, then revised by a person",
                            overrides={"approval_policy": "escalations_only", "max_revisions": 0})
    assert snap.waiting_for_human and snap.interrupt["escalated"] is True
    llm.on_chat(lambda req: PASSING, model=JUDGE)
    revised = await resume(snap.thread_id, {"action": "revise", "feedback": "Give the head counts", "reviewer": "ann"})
    assert revised.waiting_for_human, revised.values.get("outcome")
    assert revised.interrupt["draft"]["version"] == 2 and revised.interrupt["editor_decision"] == "approve"
    assert revised.interrupt["escalated"] is False
    assert await posts.publications_for(db, snap.thread_id) == []
    done = await resume(snap.thread_id, {"action": "approve", "reviewer": "ann"})
    assert done.values["outcome"] == "published"


async def test_concurrent_double_approve_publishes_once(db, llm):
    snap = await start_post("Two buttons pressed at once")
    results = await asyncio.gather(resume(snap.thread_id, "approve"), resume(snap.thread_id, "approve"),
                                   return_exceptions=True)
    assert any(not isinstance(r, Exception) for r in results)
    assert len(await posts.publications_for(db, snap.thread_id)) == 1
    assert (await current(snap.thread_id)).values["outcome"] == "published"


async def test_publisher_crash_after_ledger_write_does_not_publish_twice(db, llm, monkeypatch):
    import tools.publish as publish_mod

    writes = []
    real_publish = publish_mod.StaticSiteDestination.publish
    real_record = posts.insert_publication  # the ledger write publish_everywhere makes

    def counting_publish(self, item):
        writes.append(item.publish_key)
        return real_publish(self, item)

    async def record_then_crash(*a, **kw):
        await real_record(*a, **kw)
        raise ConnectionError("simulated crash after the ledger commit")

    monkeypatch.setattr(publish_mod.StaticSiteDestination, "publish", counting_publish)
    monkeypatch.setattr(posts, "insert_publication", record_then_crash)
    snap = await start_post("Crash in the publisher")
    with pytest.raises(ConnectionError):
        await resume(snap.thread_id, "approve")
    monkeypatch.setattr(posts, "insert_publication", real_record)
    # the retry replays the publisher node from its last checkpoint
    from service.runner import drive

    done = await drive(snap.thread_id, None)
    assert done.values["outcome"] == "published" and done.values["publication"]["replayed"] is True
    assert len(writes) == 1 and len(await posts.publications_for(db, snap.thread_id)) == 1


async def test_resume_in_a_new_process(db, llm, pg_url):
    snap = await start_post("Resume me elsewhere")
    env = dict(os.environ, DATABASE_URL=pg_url)
    # A reviewer who read another version is refused, with the reason, and nothing changes.
    stale = subprocess.run([sys.executable, "-m", "service.cli", "approve", snap.thread_id, "--version", "2"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert stale.returncode == 1 and "waits at draft v1, not v2" in stale.stderr, stale.stderr
    assert (await posts.get_post(db, snap.thread_id))["status"] == "awaiting_approval"
    out = subprocess.run([sys.executable, "-m", "service.cli", "approve", snap.thread_id, "--reviewer", "carol",
                          "--version", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "published to" in out.stdout
    assert (await posts.get_post(db, snap.thread_id))["status"] == "published"
    decision = (await _events(db, snap.thread_id, "human_decision"))[0]
    assert decision["actor"] == "carol"


async def test_a_failed_post_is_retried_from_its_last_checkpoint(db, llm):
    """The writer's endpoint is down past its retries: the post fails with the reason. `retry`, once
    it is back, runs the writer again and keeps the research done before it; only a failed post can
    be retried."""
    from service.runner import NothingToRetry, retry
    from tests.engine_fixtures import draft_reply, reset_runtime
    from tests.scripted_llm import Fault

    def writer_down(req):
        return Fault.server_error(503, "writer is down") if "You are the writer" in req.prompt else draft_reply(req)

    def research_calls() -> int:
        return sum("You are the writer" not in r.prompt for r in llm.requests_for(WRITER))

    llm.on_chat(writer_down, model=WRITER)
    snap = await start_post("Retried after the writer came back")
    tid = snap.thread_id
    assert snap.values["outcome"] == "failed" and snap.values["error"].startswith("writer:")
    assert snap.values["research"] is not None and snap.values["drafts"] == []
    assert (await posts.get_post(db, tid))["status"] == "failed"
    researched = research_calls()
    from storage.maintenance import keep_last_checkpoints

    assert await keep_last_checkpoints(db, tid, 1) >= 1  # `newsroom prune` ran on the failed thread meanwhile
    with pytest.raises(NothingToResume, match=f"it failed \\(writer: .*newsroom retry {tid}"):
        await resume(tid, "approve")  # nothing to approve: the answer says what to do instead

    llm.on_chat(draft_reply, model=WRITER)
    reset_runtime()  # as a new process would: the breaker the failures opened is fresh
    again = await retry(tid, actor="ann")
    assert again.waiting_for_human and again.interrupt["draft"]["version"] == 1
    assert research_calls() == researched  # the research was not done again
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
    retried = [e for e in await posts.list_events(db, tid) if e["kind"] == "retry"]
    assert [(e["actor"], e["from_status"], e["to_status"]) for e in retried] == [("ann", "failed", "drafting")]

    with pytest.raises(NothingToRetry, match="waiting for approval"):
        await retry(tid)
    with pytest.raises(NothingToRetry, match="unknown thread"):
        await retry("no-such-thread-for-retry")
    assert (await resume(tid, "approve")).values["outcome"] == "published"
    with pytest.raises(NothingToRetry, match="ended: published"):
        await retry(tid)


async def test_cli_post_that_fails_exits_1_with_the_retry_command_which_works(db, llm, pg_url):
    from tests.server_fixtures import free_port

    down = dict(os.environ, DATABASE_URL=pg_url, NEWSROOM_LLM_PROVIDER="vllm",
                NEWSROOM_LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", NEWSROOM_LLM_MAX_ATTEMPTS="1")
    out = subprocess.run([sys.executable, "-m", "service.cli", "post", "Fails, then retried from the CLI"],
                         cwd=ROOT, env=down, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.count("FAILED: researcher") == 1  # once, not once per graph level
    tid = out.stdout.split("once the cause is fixed: newsroom retry ")[1].split()[0]
    assert (await posts.get_post(db, tid))["status"] == "failed"
    failed = subprocess.run([sys.executable, "-m", "service.cli", "status", tid[-8:]], cwd=ROOT, env=down,
                            capture_output=True, text=True, timeout=120)
    assert f"once the cause is fixed: newsroom retry {tid}" in failed.stdout and "failed: no LLM route" in failed.stdout

    up = dict(os.environ, DATABASE_URL=pg_url)  # the scripted LLM again
    again = subprocess.run([sys.executable, "-m", "service.cli", "retry", tid[-8:], "--reviewer", "dee"],
                           cwd=ROOT, env=up, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "waiting for approval" in again.stdout and f"newsroom approve {tid}" in again.stdout
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
    status = subprocess.run([sys.executable, "-m", "service.cli", "status", tid], cwd=ROOT, env=up,
                            capture_output=True, text=True, timeout=120)
    assert "dee          retry failed -> researching" in status.stdout, status.stdout


async def test_ctrl_c_of_a_cli_post_says_which_thread_and_recovery_runs_it_on(db, llm, pg_url):
    import signal
    import time

    from service.recovery import recover
    from tests.scripted_llm import Fault

    topic = "Interrupted by Ctrl-C, then recovered"
    llm.script(Fault.hang(30), model=WRITER)  # the researcher's LLM call hangs: Ctrl-C lands mid-desk
    # The CLI as a terminal starts it, with SIGINT live. A suite started in the background by a script
    # (`make test &`, no job control) has SIGINT ignored, a child inherits that across exec, and its
    # Python then never turns Ctrl-C into KeyboardInterrupt: the post ran on to the gate and exited 0.
    # A handler (not SIG_IGN) in this process is reset to the default in the child at exec.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "post", topic], cwd=ROOT,
                                env=dict(os.environ, DATABASE_URL=pg_url), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, inherited)
    try:
        # Wait for the hung call itself (the CLI's start takes a while on a loaded machine); a Ctrl-C
        # sent before it would test something else, so say so instead of sending it anyway.
        deadline = time.monotonic() + 120
        while not any(topic in r.prompt for r in llm.requests_for(WRITER)):
            assert proc.poll() is None and time.monotonic() < deadline, "the CLI never made the researcher's call"
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    tid = err.split("interrupted: thread ")[1].split()[0]
    assert f"`newsroom recover --thread {tid}` runs it on" in err and "Traceback" not in err
    assert (await posts.get_post(db, tid))["status"] == "researching"
    report = await recover(thread_ids=[tid])
    assert report.resumed == [tid] and report.outcomes[tid] == "waiting_for_human"
