"""Run the engine graph in-process on our checkpointer (CLI, demo, tests, scripts)."""
from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph.types import Command
from pydantic import BaseModel, ValidationError

from agents.models import CostEstimate
from config.run_config import run_overrides
from graphs.engine import build_graph, post_metadata
from graphs.state import PostInput
from storage import posts
from storage.checkpointer import checkpointer
from storage.connect import get_database
from tools.tracing import traces_flushed

ProgressFn = Callable[[str, str, float], None]  # (desk, message, seconds since start)


@dataclass
class RunSnapshot:
    thread_id: str
    next: tuple[str, ...]
    values: dict[str, Any]
    interrupt: dict | None = None
    interrupt_id: str | None = None
    checkpoint_id: str | None = None
    events: list[str] = field(default_factory=list)
    steps: int = 0  # node updates the drive that produced this snapshot streamed (0 = it did nothing)

    @property
    def waiting_for_human(self) -> bool:
        return self.interrupt is not None


def new_thread_id() -> str:
    return str(uuid.uuid4())


_STARTS = {"start_research": "researching...", "start_drafting": "drafting...", "start_editing": "checking the draft...",
           "start_publishing": "publishing...", "prepare_approval": "handing the draft to a human"}


def _describe(node: str, update: Any) -> str | None:
    if node in _STARTS:
        return _STARTS[node]
    if not isinstance(update, dict):
        return None
    if node == "supervisor" and update.get("cost_estimate"):
        return CostEstimate.model_validate(update["cost_estimate"]).summary()
    if node == "over_budget" and update.get("budget_stop"):
        stop = update["budget_stop"]
        return (f"OVER BUDGET: spent ${stop['spent_usd']:.4f} of ${stop['budget_usd']:.4f}, stopped before the "
                f"{stop['stopped_before']}" + (" -> to a human" if stop.get("draft_version") else " (no draft: failed)"))
    if node == "plan" and update.get("plan"):
        p = update["plan"]
        if p.get("skipped") or p.get("error"):
            return f"plan: topic only ({(p.get('skipped') or p.get('error') or '')[:120]})"
        return f"plan: {len(p['sub_questions'])} sub-questions" + (f", {len(p['urls'])} URLs" if p.get("urls") else "")
    if node == "retrieve" and update.get("retrieval"):
        r = update["retrieval"]
        if r.get("skipped"):
            return f"retrieval skipped: {r['skipped']}"
        return (f"retrieval: {len(r['candidates'])} notes above the floor {r['floor']:.2f}"
                + (f", {len(r['below_floor'])} below" if r.get("below_floor") else ""))
    if node == "fetch" and update.get("fetched"):
        f = update["fetched"]
        bad = [x for x in f if not x["ok"]]
        return f"fetched {len(f) - len(bad)} of {len(f)} URLs" + (
            "; not fetched: " + "; ".join(f"{x['url'][:80]} ({(x['error'] or '')[:80]})" for x in bad) if bad else "")
    if node == "gather" and update.get("research"):
        r = update["research"]
        return (f"research notes (grounded, {len(r['citations'])} sources)" if r["grounded"] else
                f"research notes UNGROUNDED: {(r.get('ungrounded_reason') or 'no corpus match')[:160]}")
    if node == "outline" and update.get("outlines"):
        o = update["outlines"][-1]
        return f"outline: {len(o['sections'])} sections" if not o.get("error") else "outline: none (invalid), drafting from the notes"
    if node == "check_citations" and update.get("citation_checks"):
        c = update["citation_checks"][-1]
        rate = "-" if c["support_rate"] is None else f"{c['support_rate']:.0%}"
        bad = sum(1 for x in c["claims"] if x["status"] == "unsupported")
        return (f"citation check v{c['draft_version']}: support {rate} ({c['supported']}/{c['checked']}), "
                + ("passed" if c["passed"] else f"{bad} unsupported -> back to the Writer"))
    if node == "write" and update.get("drafts"):
        d = update["drafts"][-1]
        return f"draft v{d['version']} ({len(d['body'].split())} words, {d['reason']})"
    if node == "judge" and update.get("reviews"):
        r = update["reviews"][-1]
        if r["verdict"]:
            v = r["verdict"]
            return (f"verdict {r['decision'].upper()} on v{r['draft_version']}: ta={v['technical_accuracy']} "
                    f"cal={v['calibration']} depth={v['mechanistic_depth']} aud={v['audience_calibration']} "
                    f"mean={r['mean']:.2f} flag={v['flag']}")
        return f"verdict INVALID after {r['attempts']} attempts: {(r.get('error') or '')[:120]}"
    if node == "publish" and update.get("publication"):
        return f"published -> {update['publication']['location']}"
    if update.get("outcome") == "failed":
        return f"FAILED: {update.get('error')}"
    return None


def latest_interrupt(state) -> tuple[Any, str | None]:
    """(value, id) of the last interrupt of a thread's StateSnapshot; (None, None) when none waits."""
    interrupt, interrupt_id = None, None
    for task in state.tasks:
        for intr in task.interrupts:
            interrupt, interrupt_id = intr.value, getattr(intr, "id", None)
    return interrupt, interrupt_id


def _plain(value: Any) -> Any:
    """State values as JSON data, as the Agent Server's clients see them (a desk subgraph hands
    some channels back as validated models)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


async def snapshot(graph, config) -> RunSnapshot:
    state = await graph.aget_state(config)
    interrupt, interrupt_id = latest_interrupt(state)
    return RunSnapshot(
        thread_id=config["configurable"]["thread_id"], next=tuple(state.next), values=_plain(dict(state.values)),
        interrupt=interrupt, interrupt_id=interrupt_id,
        checkpoint_id=(state.config.get("configurable") or {}).get("checkpoint_id"),
    )


async def drive(thread_id: str, graph_input: Any, *, progress: ProgressFn | None = None,
                overrides: dict | None = None, metadata: dict | None = None) -> RunSnapshot:
    """Run until the graph ends or stops at the approval interrupt; report each desk's step."""
    config = {"configurable": {"thread_id": thread_id, **(overrides or {})}, "metadata": metadata or {},
              "recursion_limit": 100}
    started = time.monotonic()
    # traces_flushed: with Langfuse on, this run's spans are sent at the end (bounded wait, off the loop)
    steps, last = 0, None
    async with checkpointer() as saver, traces_flushed():
        graph = build_graph().compile(checkpointer=saver)
        async for ns, chunk in graph.astream(graph_input, config, stream_mode="updates", subgraphs=True):
            for node, update in chunk.items():
                if node == "__interrupt__":
                    continue
                steps += 1
                desk = ns[0].split(":")[0] if ns else node
                msg = _describe(node, update)
                if progress and msg and (desk, msg) != last:  # a desk's result also arrives as its subgraph's
                    progress(desk, msg, time.monotonic() - started)
                    last = (desk, msg)
        snap = await snapshot(graph, config)
        snap.steps = steps
        return snap


class ThreadBusy(RuntimeError):
    """Another live process holds this thread's run lease (it is running it right now)."""


@contextlib.asynccontextmanager
async def _exclusively(thread_id: str):
    """Hold the thread's run lease for the block, or raise ThreadBusy."""
    from service.recovery import run_lease  # late: recovery builds on this module

    async with run_lease(await get_database(), thread_id) as held:
        if not held:
            raise ThreadBusy(f"thread {thread_id} is being run by another process right now")
        yield


async def drive_exclusively(thread_id: str, graph_input: Any, **kwargs) -> RunSnapshot:
    """drive() under the thread's run lease, so a recoverer never drives a thread a live CLI run holds."""
    async with _exclusively(thread_id):
        return await drive(thread_id, graph_input, **kwargs)


class InvalidRequest(ValueError):
    """A post request the graph would refuse (empty or over-long topic): said before anything starts."""


def checked_input(topic: str, *, requester: str, source: str, sources: list[str] | None = None) -> dict:
    """The graph's input, validated as the graph will (PostInput), with a message a person can act on."""
    try:
        return PostInput(topic=topic.strip(), requester=requester, source=source, sources=list(sources or [])).model_dump()
    except ValidationError as err:
        problems = []
        for e in err.errors():
            field_name = ".".join(str(p) for p in e["loc"])
            if field_name == "topic" and e["type"] == "string_too_short":
                problems.append("the topic is empty: say what the post is about")
            elif field_name == "topic" and e["type"] == "string_too_long":
                problems.append(f"the topic has {len(topic.strip())} characters; the limit is "
                                f"{e['ctx']['max_length']}")
            else:
                problems.append(f"{field_name}: {e['msg']}")
        raise InvalidRequest("; ".join(problems)) from None


async def start_post(topic: str, *, requester: str = "cli", source: str = "cli", thread_id: str | None = None,
                     progress: ProgressFn | None = None, overrides: dict | None = None,
                     metadata: dict | None = None, sources: list[str] | None = None) -> RunSnapshot:
    graph_input = checked_input(topic, requester=requester, source=source, sources=sources)
    tid = thread_id or new_thread_id()
    # The post and the run's overrides are saved before the run's first step: if this process dies
    # before that step commits, recovery still finds the post and runs it with its own settings.
    await posts.create_post(await get_database(), tid, graph_input["topic"], requester, source=source,
                            metadata=post_metadata(metadata), run_overrides=run_overrides(overrides or {}))
    return await drive_exclusively(tid, graph_input, progress=progress, overrides=overrides, metadata=metadata)


class NothingToResume(RuntimeError):
    """The thread is not waiting at the approval gate (already decided, finished or unknown)."""


async def current(thread_id: str) -> RunSnapshot:
    async with checkpointer() as saver:
        graph = build_graph().compile(checkpointer=saver)
        return await snapshot(graph, {"configurable": {"thread_id": thread_id}})


async def kept_overrides(thread_id: str) -> dict:
    """The per-run setting overrides the thread's run was started with (kept with its post)."""
    return run_overrides(await posts.run_overrides_of(await get_database(), thread_id))


class DraftChanged(NothingToResume):
    """The gate no longer waits at the draft the answer was meant for (another decision came first)."""


async def resume(thread_id: str, value: Any, *, progress: ProgressFn | None = None,
                 overrides: dict | None = None, expected_version: int | None = None) -> RunSnapshot:
    """Answer the pending approval interrupt; refuses when nothing is pending (no double decisions).

    expected_version: the draft version the human read; refused (DraftChanged) if the gate now
    waits at another one. The answer is keyed to the interrupt checked under the run lease, so a
    decision another channel applies in between (Agent Server runs hold no lease) cannot make this
    answer land on a draft nobody here saw. Without `overrides`, the run goes on with those it was
    started with (`newsroom post --policy`)."""
    async with _exclusively(thread_id):
        snap = await current(thread_id)
        if not snap.waiting_for_human:
            status = snap.values.get("outcome") if snap.values else None
            if status == "failed":
                raise NothingToResume(f"thread {thread_id} is not waiting for approval: it failed "
                                      f"({snap.values.get('error')}); once the cause is fixed: newsroom retry {thread_id}")
            raise NothingToResume(
                f"thread {thread_id} is not waiting for approval"
                + (f" (already decided: {status})" if status and status != "pending" else
                   " (unknown thread)" if not snap.values else f" (next: {', '.join(snap.next) or 'nothing'})"))
        waiting = ((snap.interrupt or {}).get("draft") or {}).get("version")
        if expected_version is not None and waiting != expected_version:
            raise DraftChanged(f"thread {thread_id} waits at draft v{waiting}, not v{expected_version}: nothing "
                               f"changed; read it first (newsroom status {thread_id})")
        if overrides is None:
            overrides = await kept_overrides(thread_id)
        value = await _through_the_ledger(snap, value)
        command = Command(resume={snap.interrupt_id: value}) if snap.interrupt_id else Command(resume=value)
        after = await drive(thread_id, command, progress=progress, overrides=overrides)
        if after.steps == 0:
            # The keyed answer found its interrupt gone (someone else answered in between): the
            # gate only asked again, nothing ran.
            raise DraftChanged(f"thread {thread_id}: the approval this answered was decided elsewhere meanwhile; "
                               f"nothing changed (newsroom status {thread_id})")
        return after


async def _through_the_ledger(snap: RunSnapshot, value: Any) -> Any:
    """The CLI's answer as the approvals ledger issues it: the gate of the waiting interrupt is
    claimed for this reviewer (so Telegram, the web page or Studio cannot decide it too) and the
    resume carries the gate token. An answer that does not parse goes as typed: the graph records
    it as invalid and asks again. A gate another channel decided meanwhile refuses the answer."""
    from agents.supervisor import ResumeValueError, parse_answer
    from service.approvals import PendingInterrupt, claim_interrupt, resume_value

    if isinstance(value, dict) and value.get("gate_token"):
        return value  # claimed already by a channel (service.approvals.decide): the graph checks the token
    try:
        answer = parse_answer(value)
    except ResumeValueError:
        return value
    pending = PendingInterrupt(thread_id=snap.thread_id, interrupt_id=snap.interrupt_id or "", payload=snap.interrupt)
    # An edit too long or changing nothing, a section the draft lacks: AnswerRefused, nothing claimed.
    gate, token = await claim_interrupt(await get_database(), pending, action=answer.action, text=answer.text,
                                        reviewer=answer.reviewer, via="cli", draft=answer.draft, section=answer.section)
    action, text, reviewer = answer.action, answer.text, answer.reviewer
    if not token:
        raise DraftChanged(f"thread {snap.thread_id}: the approval this answered was decided elsewhere meanwhile "
                           f"({gate.decision} by {gate.decided_by} via {gate.decided_via}); nothing changed "
                           f"(newsroom status {snap.thread_id})")
    return resume_value(action, text, reviewer, token, answer.section)


class NothingToRetry(RuntimeError):
    """The thread has not failed (it waits, runs, or ended otherwise), or is unknown."""


async def retry(thread_id: str, *, actor: str = "cli", progress: ProgressFn | None = None) -> RunSnapshot:
    """Run a failed post again from its last checkpoint: the desk that failed (its LLM route was
    down, say) runs again with the run's own overrides; the work saved before it is kept."""
    async with _exclusively(thread_id):
        snap = await current(thread_id)
        outcome = (snap.values or {}).get("outcome")
        if not snap.values:
            raise NothingToRetry(f"thread {thread_id}: no run saved for it (unknown thread)")
        if outcome != "failed" or snap.next:
            state = "waiting for approval" if snap.waiting_for_human else (
                f"running or cut off (next: {', '.join(snap.next)}; newsroom recover resumes it)" if snap.next
                else f"ended: {outcome}")
            raise NothingToRetry(f"thread {thread_id} has not failed ({state}): nothing to retry")
        try:
            await posts.reopen_failed(await get_database(), thread_id, actor=actor)
        except posts.NotRetryable as err:
            raise NothingToRetry(str(err)) from None
        async with checkpointer() as saver:
            graph = build_graph().compile(checkpointer=saver)
            # As the supervisor's own update: its router then picks the desk that failed.
            await graph.aupdate_state({"configurable": {"thread_id": thread_id}},
                                      {"outcome": "pending", "error": None}, as_node="supervisor")
        return await drive(thread_id, None, progress=progress, overrides=await kept_overrides(thread_id))
