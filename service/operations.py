"""The operations on a post, each written once over an Engine (service/engine.py): start, resume
(an answer typed for a thread), retry, cancel, view. The CLI calls them with a LocalEngine,
Telegram and the web page with a ServerEngine; a channel only parses its input and renders the
result (service/views.py holds what every channel shows alike). A decision on a gate a channel
showed (a button, a form) is service/decisions.decide, the same once-only path for every channel.

Adding an operation: one function here, then its rendering in each channel (see `cancel`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agents.supervisor import ResumeValueError, parse_answer
from config import get_settings
from config.run_config import run_overrides
from service.decisions import DecisionResult, StartRun, claim_interrupt, decide, gate_for, resume_value
from service.engine import Engine, PendingInterrupt, ProgressFn, RunSnapshot, new_thread_id
from storage import posts
from storage.connect import get_database
from storage.db import Database
from tools.publish import missing_destinations

log = logging.getLogger(__name__)

class InvalidRequest(ValueError):
    """A post request the graph would refuse (empty or over-long topic): said before anything starts."""


class NothingToResume(RuntimeError):
    """The thread is not waiting at the approval gate (already decided, finished or unknown)."""


class DraftChanged(NothingToResume):
    """The gate no longer waits at the draft the answer was meant for (another decision came first)."""


class NothingToRetry(RuntimeError):
    """The thread has not failed (it waits, runs, or ended otherwise), or is unknown. `why` says which
    (unknown | waiting | running | ended | refused), for a channel that words it its own way."""

    def __init__(self, message: str, *, thread_id: str, why: str, outcome: str | None = None,
                 next: tuple[str, ...] = ()):
        super().__init__(message)
        self.thread_id, self.why, self.outcome, self.next = thread_id, why, outcome, next


class NothingToCancel(RuntimeError):
    """The post is unknown or already finished (the message says which; nothing changed)."""


# --- start ---------------------------------------------------------------------------------------------

def checked_input(topic: str, *, requester: str, source: str, sources: list[str] | None = None) -> dict:
    """The graph's input, validated as the graph will (PostInput), with a message a person can act on."""
    from graphs.state import PostInput

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


async def start(engine: Engine, topic: str, *, requester: str = "cli", source: str = "cli",
                thread_id: str | None = None, progress: ProgressFn | None = None, overrides: dict | None = None,
                metadata: dict | None = None, sources: list[str] | None = None) -> RunSnapshot:
    """A new post, run until the graph ends or stops at the gate."""
    from graphs.engine import post_metadata

    graph_input = checked_input(topic, requester=requester, source=source, sources=sources)
    tid = thread_id or new_thread_id()
    # The post and the run's overrides are saved before the run's first step: if this process dies
    # before that step commits, recovery still finds the post and runs it with its own settings.
    await posts.create_post(await get_database(), tid, graph_input["topic"], requester, source=source,
                            metadata=post_metadata(metadata), run_overrides=run_overrides(overrides or {}))
    async with engine.exclusively(tid):
        return await engine.run(tid, graph_input, progress=progress, overrides=overrides, metadata=metadata)


# --- view ----------------------------------------------------------------------------------------------

async def kept_overrides(thread_id: str) -> dict:
    """The per-run setting overrides the thread's run was started with (kept with its post)."""
    return run_overrides(await posts.run_overrides_of(await get_database(), thread_id))


@dataclass
class PostView:
    """A post as every channel's status shows it: its row, events, LLM calls, publications, the
    destinations it still lacks, and (when asked) the engine's snapshot of its thread."""

    post: dict | None
    events: list[dict]
    llm_calls: list[dict]
    publications: list[dict]
    missing: list[str]
    snapshot: RunSnapshot | None = None


async def view(engine: Engine | None, db: Database, thread_id: str) -> PostView:
    """The post's status with its destinations; with an engine, also the thread's snapshot."""
    post = await posts.get_post(db, thread_id)
    if post is None:
        return PostView(None, [], [], [], [])
    pubs = await posts.publications_for(db, thread_id)
    return PostView(post, await posts.list_events(db, thread_id), await posts.llm_calls_for(db, thread_id), pubs,
                    missing_destinations(post, pubs, get_settings().publish_destinations),
                    await engine.view(thread_id) if engine is not None else None)


# --- resume: an answer typed for a thread -----------------------------------------------------------------

async def resume(engine: Engine, thread_id: str, value: Any, *, progress: ProgressFn | None = None,
                 overrides: dict | None = None, expected_version: int | None = None, via: str = "cli") -> RunSnapshot:
    """Answer the pending approval interrupt; refuses when nothing is pending (no double decisions).

    expected_version: the draft version the human read; refused (DraftChanged) if the gate now
    waits at another one. The answer is keyed to the interrupt checked while the thread is held,
    so a decision another channel applies in between cannot make this answer land on a draft
    nobody here saw. Without `overrides`, the run goes on with those it was started with."""
    async with engine.exclusively(thread_id):
        snap = await engine.view(thread_id) or RunSnapshot(thread_id=thread_id, next=(), values={})
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
        value = await _through_the_ledger(snap, value, via=via)
        from langgraph.types import Command  # ~1 s to import: the CLI's resume only

        command = Command(resume={snap.interrupt_id: value}) if snap.interrupt_id else Command(resume=value)
        after = await engine.run(thread_id, command, progress=progress, overrides=overrides)
        if after.steps == 0:
            # The keyed answer found its interrupt gone (someone else answered in between): the
            # gate only asked again, nothing ran.
            raise DraftChanged(f"thread {thread_id}: the approval this answered was decided elsewhere meanwhile; "
                               f"nothing changed (newsroom status {thread_id})")
        return after


async def _through_the_ledger(snap: RunSnapshot, value: Any, *, via: str) -> Any:
    """The answer as the approvals ledger issues it: the gate of the waiting interrupt is claimed
    for this reviewer (so Telegram, the web page or Studio cannot decide it too) and the resume
    carries the gate token. An answer that does not parse goes as typed: the graph records it as
    invalid and asks again. A gate another channel decided meanwhile refuses the answer."""
    if isinstance(value, dict) and value.get("gate_token"):
        return value  # claimed already by a channel (service.decisions.decide): the graph checks the token
    try:
        answer = parse_answer(value)
    except ResumeValueError:
        return value
    # An edit too long or changing nothing, a section the draft lacks: AnswerRefused, nothing claimed.
    pending = PendingInterrupt(thread_id=snap.thread_id, interrupt_id=snap.interrupt_id or "", payload=snap.interrupt)
    gate, token = await claim_interrupt(await get_database(), pending, action=answer.action, text=answer.text,
                                        reviewer=answer.reviewer, via=via, draft=answer.draft, section=answer.section)
    if not token:
        raise DraftChanged(f"thread {snap.thread_id}: the approval this answered was decided elsewhere meanwhile "
                           f"({gate.decision} by {gate.decided_by} via {gate.decided_via}); nothing changed "
                           f"(newsroom status {snap.thread_id})")
    return resume_value(answer.action, answer.text, answer.reviewer, token, answer.section)


# --- retry -----------------------------------------------------------------------------------------------

async def reopen_failed(engine: Engine, db: Database, thread_id: str, *, actor: str) -> dict:
    """A failed post made ready to run again from its last checkpoint: the post reopened (a logged
    'retry' step, storage.posts.reopen_failed) and the graph's failed outcome cleared as the
    supervisor's update, whose router then picks the desk that failed. The caller starts a run with
    no input on the thread, with the returned overrides (the run's own). Raises NothingToRetry."""
    snap = await engine.view(thread_id)
    if snap is None or not snap.values:
        raise NothingToRetry(f"thread {thread_id}: no run saved for it (unknown thread)", thread_id=thread_id,
                             why="unknown" if snap is None else "not_started")
    outcome = snap.values.get("outcome")
    if outcome != "failed" or snap.next:
        why, state = ("waiting", "waiting for approval") if snap.waiting_for_human else (
            ("running", f"running or cut off (next: {', '.join(snap.next)}; newsroom recover resumes it)") if snap.next
            else ("ended", f"ended: {outcome}"))
        raise NothingToRetry(f"thread {thread_id} has not failed ({state}): nothing to retry", thread_id=thread_id, why=why,
                             outcome=outcome, next=snap.next)
    try:
        await posts.reopen_failed(db, thread_id, actor=actor)
    except (posts.NotRetryable, posts.PostNotFound) as err:
        raise NothingToRetry(str(err), thread_id=thread_id, why="refused") from None
    await engine.patch_as_supervisor(thread_id, {"outcome": "pending", "error": None})
    return await kept_overrides(thread_id)


async def retry(engine: Engine, thread_id: str, *, actor: str = "cli", progress: ProgressFn | None = None) -> RunSnapshot:
    """Run a failed post again from its last checkpoint: the desk that failed (its LLM route was
    down, say) runs again with the run's own overrides; the work saved before it is kept."""
    async with engine.exclusively(thread_id):
        overrides = await reopen_failed(engine, await get_database(), thread_id, actor=actor)
        return await engine.run(thread_id, None, progress=progress, overrides=overrides)


# --- cancel ---------------------------------------------------------------------------------------------

@dataclass
class Cancelled:
    """How a cancel went: a waiting draft rejected through the ledger (`decision`), or the runs in
    flight stopped and the post closed (`runs_stopped`)."""

    post: dict
    decision: DecisionResult | None = None
    runs_stopped: int = 0


async def cancel(engine: Engine, db: Database, thread_id: str, *, reviewer: str, via: str,
                 start_run: StartRun | None = None, chat_id: int | None = None) -> Cancelled:
    """Stop a post for good; nothing of it is published. Waiting at the gate, cancelling is a
    rejection through the same once-only path as a Reject (decisions.decide: `start_run` resumes
    it; the engine's own when None). Otherwise its runs in flight are stopped, the post is rejected,
    and the graph is ended as the supervisor: left with pending desks, `newsroom recover` would see
    a cut-off run and resume a post nobody wants. Raises NothingToCancel."""
    post = await posts.get_post(db, thread_id)
    if post is None:
        raise NothingToCancel(f"No post with thread id {thread_id}. Nothing changed.")
    if post["status"] in {str(s) for s in posts.TERMINAL}:
        raise NothingToCancel(f"Already finished ({post['status']}). Nothing changed.")
    reason = f"cancelled by {reviewer}"
    pending = await engine.pending(thread_id)
    if pending is not None:
        gate = await gate_for(db, pending, chat_id=chat_id)
        result = await decide(engine, db, gate.gate_id, action="reject", text=reason, reviewer=reviewer, via=via,
                              start_run=start_run)
        return Cancelled(post=post, decision=result)
    async with engine.exclusively(thread_id):
        stopped = await engine.cancel_runs(thread_id)
        await posts.transition(db, thread_id, "rejected", actor=reviewer, reason=reason)
        await _end_cancelled_graph(engine, thread_id, reason)
    return Cancelled(post=post, runs_stopped=stopped)


async def _end_cancelled_graph(engine: Engine, thread_id: str, reason: str) -> None:
    """Written as the supervisor, whose router sends a decided outcome to the end."""
    try:
        snap = await engine.view(thread_id)
        if snap is None or not snap.values or (snap.values.get("outcome") or "pending") != "pending":
            return  # never started (nothing to resume), or already ended
        await engine.patch_as_supervisor(thread_id, {"outcome": "rejected", "error": reason})
    except Exception as err:  # noqa: BLE001 - the post is rejected either way; recovery then fails it loudly
        log.warning("could not close the graph of cancelled thread %s: %s", thread_id, err)
