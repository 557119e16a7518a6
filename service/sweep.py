"""The approval deadline sweep: the graph cannot time itself out, so a pass here reminds, then
escalates or expires waiting approvals (each step guarded in the ledger, so it happens once), and
announces drafts no channel has shown yet. Run by the Agent Server's app, `newsroom bot` and
`newsroom sweep`."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Protocol

from pydantic import BaseModel, Field

from config import Settings
from service.decisions import decide, pending_interrupt, reasked
from storage import approvals, posts
from storage.approvals import Gate, OpenGate
from storage.db import Database

log = logging.getLogger(__name__)

WAITING_STATUSES = ["awaiting_approval", "escalated"]


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


async def _discover(engine, db: Database, report: SweepReport, notifier: Notifier | None = None) -> None:
    """Posts waiting for a human that no channel has shown yet (Studio, CLI, a bot that was down).
    A post that came from a chat is announced there with the buttons: a draft produced by a
    decision taken in Studio or the CLI (a revise, say) must not wait unseen."""
    for row in await posts.posts_in_status(db, WAITING_STATUSES):
        tid = row["thread_id"]
        if any(not g.decided for g in await approvals.gates_for_thread(db, tid)):
            continue
        try:
            pending = await pending_interrupt(engine, tid)
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


async def sweep_once(engine, db: Database, settings: Settings, notifier: Notifier | None = None) -> SweepReport:
    """One pass: at most one step per gate (reminder, then escalate/expire), so the reminder
    always comes first; every step is guarded in the ledger and happens once."""
    report = SweepReport()
    await _discover(engine, db, report, notifier)
    for gate in await approvals.open_gates(db):
        try:
            await _sweep_gate(engine, db, settings, notifier, gate, report)
        except Exception as err:  # noqa: BLE001 - one bad gate must not stop the others
            log.exception("sweep of gate %s failed", gate.gate_id)
            report.errors.append(f"{gate.thread_id}: {err}")
    return report


async def _sweep_gate(engine, db: Database, settings: Settings, notifier: Notifier | None, gate: OpenGate,
                      report: SweepReport) -> None:
    pending = await pending_interrupt(engine, gate.thread_id)
    if reasked(gate, pending):
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
        result = await decide(engine, db, gate.gate_id, action="reject", text=reason, reviewer="sweep", via="sweep")
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
