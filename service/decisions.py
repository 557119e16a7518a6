"""Human decisions at the approval gate, the same for every channel (Telegram, the web page, the
sweep, the CLI, Studio's raw resumes).

The graph's interrupt is the only source of truth about what is waiting: before a decision we read
the thread's state from the engine and compare the pending interrupt with the gate the human was
shown. The decision is then claimed in the approval ledger (storage/approvals.py) with one
conditional UPDATE, so a double press, two approvers or two channels resume the run once.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from agents import writer
from config import get_settings
from service.engine import PendingInterrupt, engine_of
from storage import approvals, posts
from storage.approvals import Gate
from storage.db import Database

log = logging.getLogger(__name__)

ACTIONS = ("approve", "revise", "reject", "edit", "approve_with_edits")
EDIT_ACTIONS = ("edit", "approve_with_edits")


class CheckedAnswer(BaseModel):
    """An answer ready to be claimed: an edit's Markdown bounded and hashed, a section that exists."""

    text: str | None = None
    edited_draft: str | None = None
    edited_hash: str | None = None
    section: str | None = None


class AnswerRefused(ValueError):
    """An answer that cannot be claimed for this gate (the message says why; nothing changed)."""


def checked_answer(pending: PendingInterrupt, action: str, *, text: str | None, draft: str | None,
                   section: str | None, max_edit_chars: int | None = None) -> CheckedAnswer:
    """Validate what an answer carries against the draft it answers, before anything is claimed."""
    if action in EDIT_ACTIONS:
        try:
            markdown = writer.checked_edit(draft, max_chars=max_edit_chars or get_settings().edit_max_chars)
        except writer.EditRefused as err:
            raise AnswerRefused(f"{err}. Nothing changed.") from None
        shown = pending.draft
        edited_hash = writer.edit_hash(shown, markdown)
        if edited_hash == shown.content_hash:
            raise AnswerRefused("The edit changes nothing in the draft: approve it instead. Nothing changed.")
        return CheckedAnswer(edited_draft=markdown, edited_hash=edited_hash)
    section = (section or "").strip() or None
    if section is not None and action == "revise":
        found = writer.find_section(pending.draft.body, section)
        if found is None:
            heads = ", ".join(f"“{h}”" for h in pending.sections) or "none"
            raise AnswerRefused(f"The draft has no section “{section[:100]}” (its sections: {heads[:600]}). "
                                "Nothing changed.")
        section = found.heading
    return CheckedAnswer(text=text, section=section if action == "revise" else None)


async def pending_interrupt(engine_or_client, thread_id: str) -> PendingInterrupt | None:
    """The thread's pending approval interrupt, or None (running, finished, unknown)."""
    return await engine_of(engine_or_client).pending(thread_id)


async def gate_for(db: Database, pending: PendingInterrupt, *, chat_id: int | None = None) -> Gate:
    return await approvals.register_gate(db, thread_id=pending.thread_id, interrupt_id=pending.interrupt_id,
                                         draft_version=pending.draft_version, chat_id=chat_id,
                                         draft_hash=pending.draft_hash)


class Outcome(StrEnum):
    RESUMED = "resumed"
    ALREADY_DECIDED = "already_decided"
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    FAILED = "failed"


class DecisionResult(BaseModel):
    outcome: Outcome
    message: str
    gate: Gate | None = None
    run_id: str | None = None
    resume_value: dict[str, Any] | None = None

    @property
    def resumed(self) -> bool:
        return self.outcome == Outcome.RESUMED


def resume_value(action: str, text: str | None, reviewer: str, token: str | None = None,
                 section: str | None = None) -> dict[str, Any]:
    """The exact value the graph's gate accepts, with the gate token the ledger issued when the
    decision was claimed (without it the gate refuses it). The gate applies what the ledger holds
    for that token (an edit's Markdown included), so an edit's value need not carry its text."""
    value: dict[str, Any] = {"action": action, "reviewer": reviewer}
    if token:
        value["gate_token"] = token
    if action == "revise":
        value["feedback"] = text
        if section:
            value["section"] = section
    elif action == "reject":
        value["reason"] = text or "rejected"
    return value


# (thread_id, resume value, run config or None) -> run id. The config carries the run's saved
# per-run overrides: a server run builds its config from its own request only.
StartRun = Callable[[str, dict[str, Any], dict[str, Any] | None], Awaitable[str]]


def default_start_run(engine_or_client) -> StartRun:
    engine = engine_of(engine_or_client)

    async def _start(thread_id: str, value: dict[str, Any], config: dict[str, Any] | None = None) -> str:
        from langgraph.types import Command  # ~1 s to import: only when a decision resumes a run

        return await engine.submit(thread_id, Command(resume=value), config=config)

    return _start


def reasked(gate: Gate, pending: PendingInterrupt | None) -> bool:
    """The thread waits at the gate's draft again, at another interrupt: the graph asked once more
    (after an invalid answer), so this draft is still undecided. Any valid decision moves the thread
    off the draft (approve/reject end it, revise writes the next version)."""
    return (pending is not None and pending.interrupt_id != gate.interrupt_id
            and pending.draft_version == gate.draft_version)


async def follow_gate(engine, db: Database, gate: Gate) -> tuple[Gate, PendingInterrupt | None]:
    """The gate a press on `gate` answers now, and the thread's pending interrupt (None when not
    read: the gate is decided). Itself, unless its draft was asked again at a new interrupt (an
    invalid answer in Studio or the CLI): nobody decided that draft, so the answer goes to the gate
    of the interrupt that waits now (storage.approvals.reask_gate)."""
    if gate.decided and gate.decided_via != approvals.REASKED:
        return gate, None
    pending = await pending_interrupt(engine, gate.thread_id)
    if reasked(gate, pending):
        gate = await approvals.reask_gate(db, gate.gate_id, pending.interrupt_id) or gate
    return gate, pending


def _already(gate: Gate) -> str:
    if gate.decision == "superseded":
        return "Already decided: this draft was answered elsewhere (Studio or the CLI) or is no longer waiting."
    how = f" via {gate.decided_via}" if gate.decided_via else ""
    return f"Already decided: {gate.decision} by {gate.decided_by}{how}. Nothing was resumed."


async def decide(
    engine, db: Database, gate_id: str, *, action: str, text: str | None, reviewer: str, via: str,
    start_run: StartRun | None = None, draft: str | None = None, section: str | None = None,
) -> DecisionResult:
    """Answer one gate once. Checks the thread really waits at THIS interrupt, claims the decision,
    then starts the resume run; a failed start releases the claim so the human can try again.
    edit / approve_with_edits carry the edited Markdown (`draft`); a revise may name one `section`."""
    if action not in ACTIONS:
        return DecisionResult(outcome=Outcome.INVALID, message=f"unknown action {action!r}: use {', '.join(ACTIONS)}")
    text = (text or "").strip() or None
    if action == "revise" and not text:
        return DecisionResult(outcome=Outcome.INVALID, message="Revise needs feedback for the writer.")
    if action in EDIT_ACTIONS and not (draft or "").strip():
        return DecisionResult(outcome=Outcome.INVALID, message="An edit needs the edited draft. Nothing changed.")
    gate = await approvals.get_gate(db, gate_id)
    if gate is None:
        return DecisionResult(outcome=Outcome.NOT_FOUND, message="This approval is unknown (it may belong to another server).")
    gate, pending = await follow_gate(engine, db, gate)
    gate_id = gate.gate_id
    if gate.decided:
        return DecisionResult(outcome=Outcome.ALREADY_DECIDED, message=_already(gate), gate=gate)
    if pending is None or pending.interrupt_id != gate.interrupt_id:
        # Finished, running, or waiting at a newer draft: this gate is over; say so and close it.
        await approvals.claim_gate(db, gate_id, decision="superseded", decided_by="newsroom", decided_via="state-check")
        gate = await approvals.get_gate(db, gate_id)
        return DecisionResult(outcome=Outcome.ALREADY_DECIDED, message=_already(gate), gate=gate)
    try:
        checked = checked_answer(pending, action, text=text, draft=draft, section=section)
    except AnswerRefused as err:
        return DecisionResult(outcome=Outcome.INVALID, message=str(err), gate=gate)
    # The text goes into the ledger with the claim: if this process dies before the resume runs,
    # recovery re-delivers exactly this answer instead of asking the human again.
    token = await approvals.claim_gate(db, gate_id, decision=action, decided_by=reviewer, decided_via=via,
                                       feedback=checked.text, edited_draft=checked.edited_draft,
                                       edited_hash=checked.edited_hash, section=checked.section)
    if not token:
        gate = await approvals.get_gate(db, gate_id)
        return DecisionResult(outcome=Outcome.ALREADY_DECIDED, message=_already(gate), gate=gate)
    value = resume_value(action, checked.text, reviewer, token, checked.section)
    # The run goes on with the settings it started with (`newsroom post --policy`, Studio's
    # configurable), not the server's environment.
    overrides = await posts.run_overrides_of(db, gate.thread_id)
    config = {"configurable": overrides} if overrides else None
    try:
        run_id = await (start_run or default_start_run(engine))(gate.thread_id, value, config)
    except Exception as err:  # noqa: BLE001 - reported to the human, the claim is undone
        log.warning("resume of %s failed to start: %s", gate.thread_id, err)
        await approvals.release_gate(db, gate_id, decided_by=reviewer)
        return DecisionResult(outcome=Outcome.FAILED, message=f"Could not resume the run: {err}", gate=gate)
    await approvals.set_gate_run(db, gate_id, run_id)
    gate = await approvals.get_gate(db, gate_id)
    return DecisionResult(outcome=Outcome.RESUMED, message=f"{action} recorded by {reviewer}", gate=gate,
                          run_id=run_id, resume_value=value)


async def claim_interrupt(db: Database, pending: PendingInterrupt, *, action: str, text: str | None, reviewer: str,
                          via: str, draft: str | None = None, section: str | None = None) -> tuple[Gate, str | None]:
    """For a caller that drives the graph itself (the CLI, scripts, benchmarks): the gate of this
    interrupt registered and claimed. Returns the gate and the token, None when another channel
    decided it first. Raises AnswerRefused for an edit or section the gate cannot take."""
    checked = checked_answer(pending, action, text=text, draft=draft, section=section)
    gate = await gate_for(db, pending)
    token = None if gate.decided else await approvals.claim_gate(
        db, gate.gate_id, decision=action, decided_by=reviewer, decided_via=via, feedback=checked.text,
        edited_draft=checked.edited_draft, edited_hash=checked.edited_hash, section=checked.section)
    return (gate if token else await approvals.get_gate(db, gate.gate_id)), token


# --- a raw resume (Studio, the SDK) through the ledger -------------------------------------------------

class ResumeRefused(Exception):
    """A raw resume the ledger does not accept: HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def raw_resume_value(resume: Any) -> Any:
    """The answer in a run's `command.resume`: the value itself, or the single value of a
    {interrupt_id: value} map."""
    if isinstance(resume, dict) and len(resume) == 1:
        (key, value), = resume.items()
        if isinstance(key, str) and len(key) == 32 and all(c in "0123456789abcdef" for c in key):
            return value
    return resume


async def claim_raw_resume(engine, db: Database, thread_id: str, resume: Any, *, reviewer: str, via: str,
                           run_id: str | None) -> Any:
    """A resume typed in Studio or sent with the SDK, taken through the ledger as the caller's own
    decision: the gate the thread waits at is claimed for `reviewer` (the authenticated identity,
    never a name typed into the value), and the value the run will carry is the ledger-issued one.
    An answer that does not parse goes on unclaimed: the graph records it as invalid and asks again.
    Raises ResumeRefused when the gate is already decided or nothing waits."""
    from agents.supervisor import ResumeValueError, parse_answer

    value = raw_resume_value(resume)
    if isinstance(value, dict) and value.get("gate_token"):
        return resume  # issued by the ledger already (a channel's decide()); the graph checks it
    try:
        answer = parse_answer(value)  # ours, or a HITL / Agent Inbox response
    except ResumeValueError:
        return resume
    action, text = answer.action, answer.text
    pending = await pending_interrupt(engine, thread_id)
    if pending is None:
        raise ResumeRefused(409, "This thread is not waiting for approval: nothing to resume.")
    if await posts.get_post(db, thread_id) is None:
        raise ResumeRefused(409, "This thread has no post in the approvals ledger: it cannot be decided here.")
    gate, pending = await follow_gate(engine, db, await gate_for(db, pending))
    if gate.decided:
        raise ResumeRefused(409, _already(gate))
    try:
        checked = checked_answer(pending or await pending_interrupt(engine, thread_id), action, text=text,
                                 draft=answer.draft, section=answer.section)
    except AnswerRefused as err:
        raise ResumeRefused(422, str(err)) from None
    token = await approvals.claim_gate(db, gate.gate_id, decision=action, decided_by=reviewer, decided_via=via,
                                       feedback=checked.text, run_id=run_id, edited_draft=checked.edited_draft,
                                       edited_hash=checked.edited_hash, section=checked.section)
    if not token:
        raise ResumeRefused(409, _already(await approvals.get_gate(db, gate.gate_id)))
    return resume_value(action, checked.text, reviewer, token, checked.section)
