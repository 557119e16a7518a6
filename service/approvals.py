"""Human decisions at the approval gate, the same for every channel (Telegram, the web page, the sweep).

The graph's interrupt is the only source of truth about what is waiting: before a decision we read
the thread's state from the Agent Server and compare the pending interrupt with the gate the human
was shown. The decision is then claimed in the approval ledger (storage/approvals.py) with one
conditional UPDATE, so a double press, two approvers or two channels resume the run once.
The graph cannot time itself out, so the deadline lives here too: `sweep_once` reminds, then
escalates or expires waiting approvals.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, Field

from agents import writer
from agents.models import Draft
from config import Settings, get_settings
from storage import approvals, posts
from storage.approvals import Gate, OpenGate
from storage.db import Database

log = logging.getLogger(__name__)

GRAPH_ID = "newsroom"
ACTIONS = ("approve", "revise", "reject", "edit", "approve_with_edits")
EDIT_ACTIONS = ("edit", "approve_with_edits")
WAITING_STATUSES = ["awaiting_approval", "escalated"]


class PendingInterrupt(BaseModel):
    """The approval interrupt a thread is stopped at, as the Agent Server reports it."""

    thread_id: str
    interrupt_id: str
    payload: dict[str, Any]
    checkpoint_id: str | None = None

    @property
    def draft_version(self) -> int:
        return int((self.payload.get("draft") or {}).get("version") or 0)

    @property
    def draft_hash(self) -> str:
        """The shown draft's hash, as agents.models.Draft.content_hash computes it."""
        d = self.payload.get("draft") or {}
        return hashlib.sha256(f"{d.get('title', '')}\n\n{d.get('body', '')}".encode()).hexdigest()

    @property
    def draft(self) -> Draft:
        """The shown draft (what an edit edits)."""
        d = self.payload.get("draft") or {}
        return Draft(version=self.draft_version, title=str(d.get("title", "")), body=str(d.get("body", "")),
                     prompt=str(d.get("prompt", "")), model=str(d.get("model", "")))

    @property
    def sections(self) -> list[str]:
        return [str(h) for h in self.payload.get("sections") or []]


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


async def pending_interrupt(client, thread_id: str) -> PendingInterrupt | None:
    """The thread's pending approval interrupt, or None (running, finished, unknown)."""
    try:
        state = await client.threads.get_state(thread_id)
    except Exception as err:  # noqa: BLE001 - narrowed below
        if not_on_this_server(err):
            return None
        raise
    for value, interrupt_id in server_interrupts(state):
        if isinstance(value, dict) and "draft" in value:
            return PendingInterrupt(thread_id=thread_id, interrupt_id=interrupt_id, payload=value,
                                    checkpoint_id=server_checkpoint_id(state))
    return None


def not_on_this_server(err: Exception) -> bool:
    """The Agent Server's answer for a thread it does not hold: 404, or 422 for an id it could never
    hold (not a UUID: a CLI or script run, in-process)."""
    return getattr(getattr(err, "response", None), "status_code", None) in (404, 422)


def server_interrupts(state: dict) -> list[tuple[Any, str]]:
    """(value, interrupt id) of every interrupt in an Agent Server thread state (threads.get_state)."""
    return [(intr.get("value"), str(intr.get("id") or task.get("id")))
            for task in state.get("tasks") or [] for intr in task.get("interrupts") or []]


def server_checkpoint_id(state: dict) -> str | None:
    return state.get("checkpoint_id") or (state.get("checkpoint") or {}).get("checkpoint_id")


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


def default_start_run(client) -> StartRun:
    async def _start(thread_id: str, value: dict[str, Any], config: dict[str, Any] | None = None) -> str:
        # "reject": a second run on a busy thread is refused by the server instead of queued behind.
        run = await client.runs.create(thread_id, GRAPH_ID, command={"resume": value}, config=config,
                                       multitask_strategy="reject")
        return run["run_id"]

    return _start


def _reasked(gate: Gate, pending: PendingInterrupt | None) -> bool:
    """The thread waits at the gate's draft again, at another interrupt: the graph asked once more
    (after an invalid answer), so this draft is still undecided. Any valid decision moves the thread
    off the draft (approve/reject end it, revise writes the next version)."""
    return (pending is not None and pending.interrupt_id != gate.interrupt_id
            and pending.draft_version == gate.draft_version)


async def follow_gate(client, db: Database, gate: Gate) -> tuple[Gate, PendingInterrupt | None]:
    """The gate a press on `gate` answers now, and the thread's pending interrupt (None when not
    read: the gate is decided). Itself, unless its draft was asked again at a new interrupt (an
    invalid answer in Studio or the CLI): nobody decided that draft, so the answer goes to the gate
    of the interrupt that waits now (storage.approvals.reask_gate)."""
    if gate.decided and gate.decided_via != approvals.REASKED:
        return gate, None
    pending = await pending_interrupt(client, gate.thread_id)
    if _reasked(gate, pending):
        gate = await approvals.reask_gate(db, gate.gate_id, pending.interrupt_id) or gate
    return gate, pending


def _already(gate: Gate) -> str:
    if gate.decision == "superseded":
        return "Already decided: this draft was answered elsewhere (Studio or the CLI) or is no longer waiting."
    how = f" via {gate.decided_via}" if gate.decided_via else ""
    return f"Already decided: {gate.decision} by {gate.decided_by}{how}. Nothing was resumed."


async def decide(
    client, db: Database, gate_id: str, *, action: str, text: str | None, reviewer: str, via: str,
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
    gate, pending = await follow_gate(client, db, gate)
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
        run_id = await (start_run or default_start_run(client))(gate.thread_id, value, config)
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


async def claim_raw_resume(client, db: Database, thread_id: str, resume: Any, *, reviewer: str, via: str,
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
    pending = await pending_interrupt(client, thread_id)
    if pending is None:
        raise ResumeRefused(409, "This thread is not waiting for approval: nothing to resume.")
    if await posts.get_post(db, thread_id) is None:
        raise ResumeRefused(409, "This thread has no post in the approvals ledger: it cannot be decided here.")
    gate, pending = await follow_gate(client, db, await gate_for(db, pending))
    if gate.decided:
        raise ResumeRefused(409, _already(gate))
    try:
        checked = checked_answer(pending or await pending_interrupt(client, thread_id), action, text=text,
                                 draft=answer.draft, section=answer.section)
    except AnswerRefused as err:
        raise ResumeRefused(422, str(err)) from None
    token = await approvals.claim_gate(db, gate.gate_id, decision=action, decided_by=reviewer, decided_via=via,
                                       feedback=checked.text, run_id=run_id, edited_draft=checked.edited_draft,
                                       edited_hash=checked.edited_hash, section=checked.section)
    if not token:
        raise ResumeRefused(409, _already(await approvals.get_gate(db, gate.gate_id)))
    return resume_value(action, checked.text, reviewer, token, checked.section)


# --- retrying a failed post ------------------------------------------------------------------------

class RetryRefused(Exception):
    """Why a failed post cannot be retried here (the message is for the user)."""


async def reopen_failed_on_server(client, db: Database, thread_id: str, *, reviewer: str) -> dict[str, Any] | None:
    """A channel's retry of a failed post the Agent Server ran: the post reopened (a logged
    'retry' step, storage.posts.reopen_failed) and the graph's failed outcome cleared as the
    supervisor's update, whose router then picks the desk that failed. The caller starts a run with
    no input on the thread; it continues from there. Returns that run's config (the run's own
    overrides); raises RetryRefused."""
    try:
        state = await client.threads.get_state(thread_id)
    except Exception as err:  # noqa: BLE001 - narrowed below
        if not_on_this_server(err):
            raise RetryRefused(f"This post did not run on this server; retry it where it ran: "
                               f"newsroom retry {thread_id}") from None
        raise
    values = state.get("values") or {}
    if values.get("outcome") != "failed" or state.get("next"):
        raise RetryRefused(f"Not failed ({values.get('outcome') or 'no run yet'}"
                           f"{', next: ' + ', '.join(state['next']) if state.get('next') else ''}). Nothing to retry.")
    try:
        await posts.reopen_failed(db, thread_id, actor=reviewer)
    except (posts.NotRetryable, posts.PostNotFound) as err:
        raise RetryRefused(f"{err}. Nothing changed.") from None
    await client.threads.update_state(thread_id, {"outcome": "pending", "error": None}, as_node="supervisor")
    overrides = await posts.run_overrides_of(db, thread_id)
    return {"configurable": overrides} if overrides else None


# --- the deadline sweep ----------------------------------------------------------------------------

class Notifier(Protocol):
    async def notify(self, gate: Gate, kind: str, text: str) -> None: ...


class SweepReport(BaseModel):
    discovered: list[str] = Field(default_factory=list)
    reminded: list[str] = Field(default_factory=list)
    escalated: list[str] = Field(default_factory=list)
    expired: list[str] = Field(default_factory=list)
    closed: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        return ", ".join(f"{k} {len(v)}" for k, v in self.model_dump().items())


def _human(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


async def _discover(client, db: Database, report: SweepReport, notifier: Notifier | None = None) -> None:
    """Posts waiting for a human that no channel has shown yet (Studio, CLI, a bot that was down).
    A post that came from a chat is announced there with the buttons: a draft produced by a
    decision taken in Studio or the CLI (a revise, say) must not wait unseen."""
    for row in await posts.posts_in_status(db, WAITING_STATUSES):
        tid = row["thread_id"]
        if any(not g.decided for g in await approvals.gates_for_thread(db, tid)):
            continue
        try:
            pending = await pending_interrupt(client, tid)
        except Exception as err:  # noqa: BLE001 - one unreadable thread must not stop the sweep
            report.errors.append(f"{tid}: {err}")
            continue
        if pending is None:
            continue
        post = await posts.get_post(db, tid) or {}
        chat = (post.get("metadata") or {}).get("chat_id")
        gate = await approvals.register_gate(db, thread_id=tid, interrupt_id=pending.interrupt_id,
                                             draft_version=pending.draft_version, draft_hash=pending.draft_hash,
                                             chat_id=int(chat) if chat is not None else None,
                                             waiting_since=row["updated_at"])
        if gate.decided:  # already claimed, its resume in flight (or for recovery): nothing to show
            continue
        report.discovered.append(tid)
        if notifier is not None and gate.chat_id is not None:
            draft = pending.payload.get("draft") or {}
            what = "escalated to you" if pending.payload.get("escalated") else "waiting for your decision"
            try:
                await notifier.notify(gate, "waiting",
                                      f"📝 Draft v{pending.draft_version} “{draft.get('title', '')}” of “{post.get('topic', '')}” "
                                      f"is {what} (it was produced outside this chat). /status {tid[-8:]} shows it in full.")
            except Exception as err:  # noqa: BLE001 - the gate is registered; one chat must not stop the sweep
                report.errors.append(f"{tid}: announcing the draft failed: {err}")


async def sweep_once(client, db: Database, settings: Settings, notifier: Notifier | None = None) -> SweepReport:
    """One pass: at most one step per gate (reminder, then escalate/expire), so the reminder
    always comes first; every step is guarded in the ledger and happens once."""
    report = SweepReport()
    await _discover(client, db, report, notifier)
    for gate in await approvals.open_gates(db):
        try:
            await _sweep_gate(client, db, settings, notifier, gate, report)
        except Exception as err:  # noqa: BLE001 - one bad gate must not stop the others
            log.exception("sweep of gate %s failed", gate.gate_id)
            report.errors.append(f"{gate.thread_id}: {err}")
    return report


async def _sweep_gate(client, db: Database, settings: Settings, notifier: Notifier | None, gate: OpenGate,
                      report: SweepReport) -> None:
    pending = await pending_interrupt(client, gate.thread_id)
    if _reasked(gate, pending):
        # Its draft was asked again: the new interrupt's gate takes over (messages, waiting time),
        # and the next pass reminds or escalates that one.
        await approvals.reask_gate(db, gate.gate_id, pending.interrupt_id)
        return
    if pending is None and gate.post_status in WAITING_STATUSES:
        # The post still waits, but this server shows no interrupt: the thread is another server's
        # (two servers on one database) or was lost from this one's registry. Closing the gate here
        # would kill its buttons; the server that runs the thread decides about it.
        return
    if pending is None or pending.interrupt_id != gate.interrupt_id:
        if await approvals.claim_gate(db, gate.gate_id, decision="superseded", decided_by="sweep",
                                      decided_via="state-check"):
            report.closed.append(gate.thread_id)
        return
    waited = (gate.db_now - gate.waiting_since).total_seconds()
    if gate.reminded_at is None:
        if waited >= settings.approval_deadline_s and await approvals.mark_reminded(db, gate.gate_id):
            await posts.record_event(db, gate.thread_id, actor="sweep", kind="approval_reminder",
                                     detail={"waited_s": round(waited), "gate_id": gate.gate_id})
            if notifier:
                await notifier.notify(gate, "reminder", (
                    f"Reminder: draft v{gate.draft_version} of “{gate.topic}” has waited {_human(waited)} for approval. "
                    f"Without a decision it will be {'escalated' if settings.approval_expiry_action == 'escalate' else 'expired (rejected)'} "
                    f"in {_human(settings.approval_grace_s)}."))
            report.reminded.append(gate.thread_id)
        return
    if gate.escalated_at is not None:
        return  # escalated once; it waits for a human from now on
    if (gate.db_now - gate.reminded_at).total_seconds() < settings.approval_grace_s:
        return
    if settings.approval_expiry_action == "expire":
        reason = f"approval expired: no decision within {_human(settings.approval_deadline_s + settings.approval_grace_s)}"
        result = await decide(client, db, gate.gate_id, action="reject", text=reason, reviewer="sweep", via="sweep")
        if result.resumed:
            await posts.record_event(db, gate.thread_id, actor="sweep", kind="approval_expired",
                                     detail={"gate_id": gate.gate_id, "run_id": result.run_id})
            if notifier:
                await notifier.notify(gate, "expired", f"Expired: draft v{gate.draft_version} of “{gate.topic}” "
                                                       f"was rejected — {reason}. Nothing was published.")
            report.expired.append(gate.thread_id)
        return
    if not await approvals.mark_escalated(db, gate.gate_id):
        return
    if gate.post_status == "awaiting_approval":
        await posts.transition(db, gate.thread_id, "escalated", actor="sweep",
                               reason="approval deadline passed", detail={"gate_id": gate.gate_id})
    await posts.record_event(db, gate.thread_id, actor="sweep", kind="approval_escalated",
                             detail={"gate_id": gate.gate_id, "waited_s": round(waited)})
    if notifier:
        await notifier.notify(gate, "escalated", f"Escalated: draft v{gate.draft_version} of “{gate.topic}” is still "
                                                 f"waiting after {_human(waited)}. Any approver can decide.")
    report.escalated.append(gate.thread_id)
