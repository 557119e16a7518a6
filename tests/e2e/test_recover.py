"""`newsroom recover`: runs cut off mid-flight are resumed from their last checkpoint, once.

A "crash" here is the drive task cancelled while an LLM call hangs (what is persisted is exactly
what a SIGKILL would leave: the checkpoints committed so far); tests/e2e/test_chaos_fast.py kills a
real process with SIGKILL.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from service.recovery import recover, run_lease
from service.runner import current, drive, start_post
from storage import approvals, maintenance, posts
from tests.approval_fixtures import InProcessServer, ProcessKilled, die_before_the_resume_starts, ledger_command
from tests.engine_fixtures import FAILING, JUDGE, WRITER
from tests.scripted_llm import Fault
from tests.server_fixtures import SERVICE_TOKEN, service_client

ROOT = Path(__file__).resolve().parents[2]


async def _wait_for(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _cut_off_while_judging(db, llm, topic: str, overrides: dict | None = None) -> str:
    """Start a post, let the judge's first call hang, and kill the run there (status 'editing')."""
    llm.script(Fault.hang(20), model=JUDGE)
    tid = str(uuid.uuid4())  # a UUID, as the Agent Server requires
    task = asyncio.create_task(start_post(topic, thread_id=tid, overrides=overrides))

    async def judging():  # this post's judge call (other posts may be judged meanwhile)
        return any(topic in r.prompt for r in llm.requests_for(JUDGE))

    await _wait_for(judging, what="the judge call")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await posts.get_post(db, tid))["status"] == "editing"
    snap = await current(tid)
    assert snap.next and not snap.waiting_for_human  # cut off: pending nodes, no interrupt
    return tid


async def test_run_cut_off_inside_a_desk_is_resumed_to_the_gate(db, llm):
    tid = await _cut_off_while_judging(db, llm, "Recover me from the editor desk")
    writer_calls = len(llm.requests_for(WRITER))

    report = await recover(thread_ids=[tid])
    assert report.resumed == [tid] and report.errors == {}
    assert report.outcomes[tid] == "waiting_for_human"
    snap = await current(tid)
    assert snap.waiting_for_human and snap.interrupt["scores"]["technical_accuracy"] == 4
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
    # Resumed from the checkpoint after the writer: the draft was not written again.
    assert len(llm.requests_for(WRITER)) == writer_calls
    assert len(snap.values["drafts"]) == 1

    # Idempotent: a second pass finds it waiting for a human and calls nothing.
    requests = len(llm.requests)
    again = await recover(thread_ids=[tid])
    assert again.waiting == [tid] and again.acted == 0
    assert len(llm.requests) == requests


async def test_waiting_for_approval_stays_waiting(db, llm):
    snap = await start_post("Wait for me")
    requests = len(llm.requests)
    report = await recover(thread_ids=[snap.thread_id])
    assert report.waiting == [snap.thread_id] and report.acted == 0
    after = await current(snap.thread_id)
    assert after.waiting_for_human and after.checkpoint_id == snap.checkpoint_id
    assert len(llm.requests) == requests


async def test_cut_off_during_publish_publishes_exactly_once(db, llm, monkeypatch):
    real_record = posts.insert_publication  # the ledger write publish_everywhere makes

    async def crash_before_ledger(*a, **kw):
        raise ConnectionError("simulated crash between the site write and the ledger commit")

    snap = await start_post("Crash while publishing")
    monkeypatch.setattr(posts, "insert_publication", crash_before_ledger)
    with pytest.raises(ConnectionError):
        await drive(snap.thread_id, await ledger_command(db, snap))
    monkeypatch.setattr(posts, "insert_publication", real_record)
    assert (await posts.get_post(db, snap.thread_id))["status"] == "publishing"

    report = await recover(thread_ids=[snap.thread_id])
    assert report.resumed == [snap.thread_id] and report.outcomes[snap.thread_id] == "published"
    assert len(await posts.publications_for(db, snap.thread_id)) == 1
    # the human decision was taken once, before the crash; recovery did not ask again
    decisions = [e for e in await posts.list_events(db, snap.thread_id) if e["kind"] == "human_decision"]
    assert len(decisions) == 1
    assert (await recover(thread_ids=[snap.thread_id])).acted == 0


async def _gate_of(db, snap):
    """The approval-ledger gate of the draft v1 a post waits at, as a channel registers it."""
    return await approvals.register_gate(db, thread_id=snap.thread_id, interrupt_id=snap.interrupt_id,
                                         draft_version=1)


async def test_claimed_approval_that_never_ran_is_redelivered(db, llm):
    """A channel claimed 'approve' in the ledger, then the server died before the resume ran."""
    snap = await start_post("An approval lost in a crash")
    gate = await _gate_of(db, snap)
    assert await approvals.claim_gate(db, gate.gate_id, decision="approve", decided_by="dora", decided_via="telegram")

    report = await recover(thread_ids=[snap.thread_id])
    assert report.redelivered == [snap.thread_id] and report.outcomes[snap.thread_id] == "published"
    assert len(await posts.publications_for(db, snap.thread_id)) == 1
    decision = next(e for e in await posts.list_events(db, snap.thread_id) if e["kind"] == "human_decision")
    assert decision["actor"] == "dora" and decision["detail"]["decision"] == "approve"
    assert (await recover(thread_ids=[snap.thread_id])).acted == 0


async def test_claimed_revise_with_its_feedback_is_redelivered_to_the_writer(db, llm):
    """The web page claimed a revise (with feedback), then its process died before the resume ran."""
    from service.decisions import decide

    feedback = "Give the KV-cache saving for 8 query heads sharing 2 KV heads, with the arithmetic."
    snap = await start_post("A revise lost in a crash, feedback and all")
    gate = await _gate_of(db, snap)
    with pytest.raises(ProcessKilled):
        await decide(InProcessServer(), db, gate.gate_id, action="revise", text=feedback, reviewer="erin (web)",
                     via="web", start_run=die_before_the_resume_starts)
    claimed = await approvals.get_gate(db, gate.gate_id)
    assert claimed.decision == "revise" and claimed.feedback == feedback and claimed.run_id is None
    assert (await current(snap.thread_id)).waiting_for_human  # the revise never reached the run
    writer_calls = len(llm.requests_for(WRITER))

    report = await recover(thread_ids=[snap.thread_id])
    assert report.redelivered == [snap.thread_id] and report.reasked == [] and report.errors == {}
    # The writer was called once more, and its prompt carries exactly the reviewer's words.
    assert len(llm.requests_for(WRITER)) == writer_calls + 1
    assert f"From the human reviewer: {feedback}" in llm.requests_for(WRITER)[-1].prompt
    after = await current(snap.thread_id)
    decision = after.values["decisions"][-1]
    assert (decision["decision"], decision["feedback"], decision["reviewer"]) == ("revise", feedback, "erin (web)")
    assert [d["version"] for d in after.values["drafts"]] == [1, 2]
    assert after.waiting_for_human and report.outcomes[snap.thread_id] == "waiting_for_human"  # v2 at the gate
    events = [e for e in await posts.list_events(db, snap.thread_id) if e["kind"] == "human_decision"]
    assert [(e["actor"], e["detail"]["feedback"]) for e in events] == [("erin (web)", feedback)]
    assert (await recover(thread_ids=[snap.thread_id])).acted == 0  # v2 waits for a human: nothing to redo


async def test_claimed_reject_is_redelivered_with_its_reason(db, llm):
    snap = await start_post("A rejection lost in a crash")
    gate = await _gate_of(db, snap)
    assert await approvals.claim_gate(db, gate.gate_id, decision="reject", decided_by="gus", decided_via="telegram",
                                      feedback="Off-topic for this blog")
    report = await recover(thread_ids=[snap.thread_id])
    assert report.redelivered == [snap.thread_id] and report.outcomes[snap.thread_id] == "rejected"
    post = await posts.get_post(db, snap.thread_id)
    assert post["status"] == "rejected" and post["status_reason"] == "Off-topic for this blog"
    assert await posts.publications_for(db, snap.thread_id) == []


async def test_claimed_revise_without_its_text_reopens_the_gate(db, llm):
    """A ledger row claimed before the feedback column existed (NULL text): ask the human again."""
    snap = await start_post("A revise lost in a crash")
    gate = await _gate_of(db, snap)
    await approvals.claim_gate(db, gate.gate_id, decision="revise", decided_by="erin", decided_via="web")
    assert (await approvals.get_gate(db, gate.gate_id)).feedback is None
    writer_calls = len(llm.requests_for(WRITER))
    report = await recover(thread_ids=[snap.thread_id])
    assert len(llm.requests_for(WRITER)) == writer_calls  # no invented feedback reached the writer
    assert report.reasked == [snap.thread_id]
    assert not (await approvals.get_gate(db, gate.gate_id)).decided  # shown again to a human
    assert (await current(snap.thread_id)).waiting_for_human


async def test_cut_off_run_is_resumed_with_its_own_overrides(db, llm):
    """Started with approval_policy=escalations_only (the environment says human), cut off while
    judging: recovery resumes it with its own policy, so the approved draft publishes on its own."""
    from config import get_settings

    assert get_settings().approval_policy == "human"
    tid = await _cut_off_while_judging(db, llm, "Recover me with my own policy",
                                       overrides={"approval_policy": "escalations_only",
                                                  "not_a_setting": "dropped", "max_revisions": None})
    # Kept with the post: whitelisted setting names only.
    assert (await posts.get_post(db, tid))["metadata"]["run_overrides"] == {"approval_policy": "escalations_only"}

    report = await recover(thread_ids=[tid])
    assert report.resumed == [tid] and report.errors == {}
    assert report.outcomes[tid] == "published"  # under "human" it would wait at the gate
    assert not (await current(tid)).waiting_for_human
    assert (await posts.get_post(db, tid))["status"] == "published"
    assert len(await posts.publications_for(db, tid)) == 1


async def test_redelivered_revise_runs_with_the_runs_own_overrides(db, llm):
    """max_revisions=0 for this run (the environment allows 3): after the re-delivered revise, the
    failing judge sends v2 straight back to the human instead of into three editor cycles."""
    llm.on_chat(lambda req: FAILING, model=JUDGE)
    snap = await start_post("Escalate at once, even after a crash", overrides={"max_revisions": 0})
    assert snap.waiting_for_human and snap.interrupt["escalated"]
    gate = await _gate_of(db, snap)
    assert await approvals.claim_gate(db, gate.gate_id, decision="revise", decided_by="hal", decided_via="telegram",
                                      feedback="Cite the paper")
    report = await recover(thread_ids=[snap.thread_id])
    assert report.redelivered == [snap.thread_id] and report.outcomes[snap.thread_id] == "waiting_for_human"
    after = await current(snap.thread_id)
    assert [d["version"] for d in after.values["drafts"]] == [1, 2]  # one human revision, no editor cycle
    assert after.interrupt["escalated"] and after.interrupt["revision"] == 0


async def test_cli_resume_keeps_the_runs_overrides(db, llm):
    """`newsroom revise` after `newsroom post --max-revisions 0`: the revision runs under the same budget."""
    from service.runner import resume

    llm.on_chat(lambda req: FAILING, model=JUDGE)
    snap = await start_post("Escalate at once, then revise from the CLI", overrides={"max_revisions": 0})
    after = await resume(snap.thread_id, {"action": "revise", "feedback": "Shorter", "reviewer": "ivy"})
    assert [d["version"] for d in after.values["drafts"]] == [1, 2]
    assert after.waiting_for_human and after.interrupt["escalated"]


def test_kept_overrides_are_exactly_the_settings_graphs_read():
    """The kept overrides are RunConfig's fields, and graphs/ reads every one of them (as run.<name>
    of the RunConfig each node reads once), and no other name: no dead whitelist entry."""
    import ast

    from config.run_config import RUN_OVERRIDE_SETTINGS, RunConfig, run_overrides

    assert set(RunConfig.model_fields) == set(RUN_OVERRIDE_SETTINGS)
    assert run_overrides({name: 1 for name in [*RUN_OVERRIDE_SETTINGS, "thread_id"]}).keys() == set(RUN_OVERRIDE_SETTINGS)
    read = set()
    for path in (ROOT / "graphs").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "run":
                read.add(node.attr)
    assert read and read == set(RUN_OVERRIDE_SETTINGS)


async def test_server_driver_hands_the_overrides_to_the_agent_server():
    from service.recovery import server_driver

    class _Threads:
        async def create(self, **kwargs):
            return {}

        async def get_state(self, thread_id):
            return {"values": {"outcome": "published"}, "next": [], "tasks": []}

    class _Runs:
        def __init__(self):
            self.created = []

        async def create(self, thread_id, graph_id, **kwargs):
            self.created.append(kwargs)
            return {"run_id": "r1"}

        async def join(self, thread_id, run_id):
            return None

    class _Client:
        threads, runs = _Threads(), _Runs()

    client = _Client()
    await server_driver(client)(str(uuid.uuid4()), None, {"approval_policy": "escalations_only"})
    assert client.runs.created == [{"multitask_strategy": "reject",
                               "config": {"configurable": {"approval_policy": "escalations_only"}}}]


async def test_two_recoverers_at_once_resume_a_thread_once(db, llm):
    tid = await _cut_off_while_judging(db, llm, "Two recoverers race")
    judge_calls = len(llm.requests_for(JUDGE))
    a, b = await asyncio.gather(recover(thread_ids=[tid]), recover(thread_ids=[tid]))
    assert sorted([len(a.resumed), len(b.resumed)]) == [0, 1]
    loser = b if a.resumed else a
    assert tid in loser.busy + loser.waiting + loser.finished
    assert len(llm.requests_for(JUDGE)) == judge_calls + 1  # one resumed run judged once
    history = [e for e in await posts.list_events(db, tid) if e["kind"] == "verdict"]
    assert len(history) == 1


async def test_a_thread_leased_by_a_live_run_is_left_alone(db, llm):
    tid = await _cut_off_while_judging(db, llm, "Someone else is driving this")
    async with run_lease(db, tid, purpose="live-run") as held:
        assert held
        report = await recover(thread_ids=[tid])
        assert report.busy == [tid] and report.acted == 0
    assert (await recover(thread_ids=[tid])).resumed == [tid]


async def test_accepted_post_that_never_started_is_started(db, llm):
    tid = f"queued-{os.urandom(4).hex()}"
    await posts.create_post(db, tid, "Accepted, then the server died", "frank", source="telegram")
    assert (await current(tid)).values == {}
    report = await recover(thread_ids=[tid])
    assert report.started == [tid]
    snap = await current(tid)
    assert snap.waiting_for_human and snap.values["requester"] == "frank"


async def test_a_cli_post_killed_before_its_first_step_keeps_its_overrides(db, llm, monkeypatch):
    """`newsroom post --policy escalations_only` dying before the run's first step committed: the
    post and its overrides were saved first, so recovery starts it, with that policy (the
    environment says human: it would have waited for a person)."""
    from service import runner

    class Killed(BaseException):
        pass

    async def die_first(*_a, **_k):
        raise Killed

    tid = str(uuid.uuid4())
    monkeypatch.setattr(runner.engine, "run", die_first)
    with pytest.raises(Killed):
        await runner.start_post("Killed before the first step", thread_id=tid,
                                overrides={"approval_policy": "escalations_only"})
    monkeypatch.undo()
    post = await posts.get_post(db, tid)
    assert post["status"] == "queued" and post["metadata"]["run_overrides"] == {"approval_policy": "escalations_only"}
    report = await recover(thread_ids=[tid])
    assert report.started == [tid] and report.outcomes[tid] == "published"


async def test_stale_after_skips_recently_updated_posts(db, llm):
    tid = await _cut_off_while_judging(db, llm, "Maybe still alive elsewhere")
    assert tid not in [c.thread_id for c in await maintenance.recovery_candidates(db, stale_after_s=3600)]
    assert tid in [c.thread_id for c in await maintenance.recovery_candidates(db, stale_after_s=0)]
    assert (await recover(thread_ids=[tid])).resumed == [tid]


async def test_recover_command_in_a_new_process(db, llm, pg_url):
    tid = await _cut_off_while_judging(db, llm, "Recover me from the CLI")
    env = dict(os.environ, DATABASE_URL=pg_url)
    dry = subprocess.run([sys.executable, "-m", "service.cli", "recover", "--thread", tid, "--dry-run", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout.strip().splitlines()[-1])["resumed"] == [tid]
    assert (await posts.get_post(db, tid))["status"] == "editing"  # a dry run changes nothing
    out = subprocess.run([sys.executable, "-m", "service.cli", "recover", "--thread", tid, "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["resumed"] == [tid] and result["outcomes"][tid] == "waiting_for_human"
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"


async def test_lease_of_a_dead_local_process_is_taken_over_at_once(db, llm):
    import socket

    tid = await _cut_off_while_judging(db, llm, "My driver was SIGKILLed")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = f"{socket.gethostname()}:{gone.pid}:run:deadbeef"
    remote = "another-host:1:run:cafebabe"
    assert maintenance.holder_is_dead(dead) and not maintenance.holder_is_dead(remote)
    assert not maintenance.holder_is_dead(f"{socket.gethostname()}:{os.getpid()}:run:self")

    assert await maintenance.acquire_run_lease(db, tid, remote, seconds=600)
    assert (await recover(thread_ids=[tid])).busy == [tid]  # alive as far as we can tell: wait
    await maintenance.release_run_lease(db, tid, remote)
    assert await maintenance.acquire_run_lease(db, tid, dead, seconds=600)
    report = await recover(thread_ids=[tid])  # long before the 600 s expiry
    assert report.resumed == [tid]


async def test_recovery_through_the_agent_server(db, llm, agent_server):
    """At `newsroom serve` start, cut-off runs resume as the server's own runs (Studio sees them)."""

    from service.cli.maintenance import start_recovery_after_serve
    from service.recovery import server_driver

    tid = await _cut_off_while_judging(db, llm, "Resume me inside the Agent Server")
    report = await recover(thread_ids=[tid], driver=server_driver(service_client(agent_server.url)))
    assert report.resumed == [tid] and report.outcomes[tid] == "waiting_for_human", agent_server.log_tail()
    state = await service_client(agent_server.url).threads.get_state(tid)
    assert state["next"] == ["human_approval"]
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"

    # A run started with its own policy resumes as a server run with that policy too.
    own = await _cut_off_while_judging(db, llm, "Resume me inside the Agent Server, my way",
                                       overrides={"approval_policy": "escalations_only"})
    report = await recover(thread_ids=[own], driver=server_driver(service_client(agent_server.url)))
    assert report.resumed == [own] and report.outcomes[own] == "published", agent_server.log_tail()
    assert (await posts.get_post(db, own))["status"] == "published"

    # The serve-time hook: a background pass through the server, after /ok answers.
    other = await _cut_off_while_judging(db, llm, "Resumed by the serve-time hook")
    worker = await asyncio.to_thread(start_recovery_after_serve, agent_server.url, echo=lambda _: None,
                                     api_key=SERVICE_TOKEN)
    await asyncio.to_thread(worker.join, 120)
    assert worker.report is not None and other in worker.report.resumed, (other, worker.report.as_dict(), agent_server.log_tail())
    assert (await posts.get_post(db, other))["status"] == "awaiting_approval"


async def test_a_channel_decision_resumes_with_the_runs_own_overrides(db, llm, agent_server):
    """Telegram and the web page resume through the Agent Server: the resume run gets the run's saved
    overrides (max_revisions=0 here, the environment allows 3), so v2 goes straight back to the human."""

    from service.decisions import decide, gate_for, pending_interrupt

    llm.on_chat(lambda req: FAILING, model=JUDGE)
    client = service_client(agent_server.url)
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "newsroom", input={"topic": "Escalate at once, then revise on the web",
                                                           "requester": "jo", "source": "web"},
                                   config={"configurable": {"max_revisions": 0}})
    await client.runs.join(tid, run["run_id"])
    pending = await pending_interrupt(client, tid)
    assert pending is not None and pending.payload["escalated"], agent_server.log_tail()
    gate = await gate_for(db, pending)
    result = await decide(client, db, gate.gate_id, action="revise", text="Name the paper", reviewer="jo (web)",
                          via="web")
    assert result.run_id, result.message
    await client.runs.join(tid, result.run_id)
    state = await client.threads.get_state(tid)
    assert [d["version"] for d in state["values"]["drafts"]] == [1, 2], agent_server.log_tail()
    again = await pending_interrupt(client, tid)  # back at the gate, no editor cycle in between
    assert again is not None and again.payload["escalated"] and again.payload["revision"] == 0
