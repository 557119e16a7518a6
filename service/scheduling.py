"""Scheduling, the same for the CLI, Telegram and the web page: approve now, publish at a time;
list, reschedule and cancel scheduled publishes; recurring topics.

How the approval interrupt and a schedule fit together (README, Scheduling):
- "approve at T" claims the approval gate as `approve` for the human, now, in the same transaction
  as the schedule row (storage/schedules.py). The run is NOT resumed: it stays parked at its
  approval interrupt, in its checkpoint, as durable as any waiting draft (Studio shows the thread
  interrupted at human_approval; its thread metadata says `scheduled_publish_at` when the thread
  lives on the Agent Server). No node sleeps.
- At T the sweep (`newsroom serve`'s background task, `newsroom bot`, `newsroom sweep`) fires the
  row (one conditional UPDATE: one sweeper wins) and delivers the resume the ledger issued with
  the claim: the gate token of that approve. The graph then runs human_approval -> Publisher as
  for an approval given at that moment; the publish ledger (one row per post and destination)
  keeps every destination once.
- A crash after the fire and before the run exists: the gate is claimed and not resumed, the
  schedule fired: recovery (`newsroom recover`, `newsroom serve` at start) re-delivers it, as any
  claimed decision. A second delivery is refused by the gate (the token is consumed once).
- Recovery never delivers a claim whose schedule is still pending (storage/maintenance_sql.py).
- Cancel releases the claim in the same transaction: the draft waits for a decision again.
- Any other answer to that gate (Studio, a button) is refused as already decided, naming the time.
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langgraph.types import Command
from pydantic import Field

from agents import schedule as rules
from agents.schedule import ScheduleError
from config import Settings, get_settings
from service import decisions, sweep
from service.engine import GRAPH_ID, PendingInterrupt
from service.sweep import Notifier, SweepReport
from storage import approvals, posts, schedules
from storage.db import Database
from storage.schedules import Recurring, Schedule

log = logging.getLogger(__name__)

__all__ = [
    "ScheduleError",
    "ScheduleRefused",
    "ScheduleSweepReport",
    "add_recurring",
    "cancel",
    "describe",
    "effective_timezone",
    "fire_due",
    "list_scheduled",
    "reschedule",
    "schedule_gate",
    "schedule_pending",
    "server_resume",
    "server_start_post",
    "set_chat_timezone",
    "start_recurring",
    "sweep_once",
]


class ScheduleRefused(ValueError):
    """A scheduling request that cannot be carried out (the message says why; nothing changed)."""


def _now() -> datetime:
    return datetime.now(UTC)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def effective_timezone(db: Database, chat_id: int | None = None, explicit: str | None = None,
                             settings: Settings | None = None) -> str:
    """The zone a time is read and shown in: the one given, else the chat's (/timezone), else
    NEWSROOM_TIMEZONE."""
    if explicit:
        return rules.zone(explicit).key
    if chat_id is not None:
        found = await schedules.chat_timezone(db, chat_id)
        if found:
            return found
    return (settings or get_settings()).timezone


async def set_chat_timezone(db: Database, chat_id: int, name: str, *, updated_by: str) -> str:
    key = rules.zone(name).key  # ScheduleError for a name zoneinfo does not know
    await schedules.set_chat_timezone(db, chat_id, key, updated_by=updated_by)
    return key


def describe(s: Schedule, tz: str | None = None) -> str:
    when = rules.format_local(s.publish_at, tz or s.timezone)
    extra = f" · last try failed: {s.last_error}" if s.last_error else ""
    return (f"{s.schedule_id} · {when} · “{s.topic[:60]}” · thread {s.thread_id[-8:]} · "
            f"approved by {s.scheduled_by} via {s.scheduled_via}{extra}")


async def _mark_thread(client, s: Schedule | None, thread_id: str) -> None:
    """Best effort: the Agent Server thread's metadata shows the schedule (Studio lists it)."""
    if client is None:
        return
    try:
        await client.threads.update(thread_id, metadata={
            "scheduled_publish_at": s.publish_at.isoformat() if s else None,
            "scheduled_by": s.scheduled_by if s else None})
    except Exception as err:  # noqa: BLE001 - a thread only this database knows (a CLI run); the row is the truth
        log.debug("thread %s metadata not updated: %s", thread_id, err)


async def _record(db: Database, s: Schedule, kind: str, actor: str, **detail: Any) -> None:
    await posts.record_event(db, s.thread_id, actor=actor, kind=kind, detail={
        "schedule_id": s.schedule_id, "gate_id": s.gate_id, "publish_at": s.publish_at.isoformat(),
        "timezone": s.timezone, **detail})


async def schedule_pending(db: Database, pending: PendingInterrupt, *, when: str, tz: str, reviewer: str, via: str,
                           chat_id: int | None = None, client=None, now: datetime | None = None) -> Schedule:
    """Approve the interrupt PENDING now and publish at WHEN (read in TZ). For a caller that read
    the interrupt itself (the CLI in-process). Raises ScheduleError (the time) or ScheduleRefused."""
    publish_at = rules.parse_publish_time(when, tz=tz, now=now or _now())
    gate = await decisions.gate_for(db, pending, chat_id=chat_id)
    return await _claim(db, gate, publish_at=publish_at, tz=tz, reviewer=reviewer, via=via, chat_id=chat_id,
                        client=client)


async def schedule_gate(client, db: Database, gate_id: str, *, when: str | datetime, tz: str, reviewer: str, via: str,
                        chat_id: int | None = None, now: datetime | None = None) -> Schedule:
    """A channel's "publish at": the gate the human was shown, checked against the interrupt the
    Agent Server holds (as decisions.decide checks it), approved now and delivered at WHEN."""
    publish_at = (rules.checked_window(when, tz=tz, now=now or _now()) if isinstance(when, datetime)
                  else rules.parse_publish_time(when, tz=tz, now=now or _now()))
    gate = await approvals.get_gate(db, gate_id)
    if gate is None:
        raise ScheduleRefused("This approval is unknown (it may belong to another server). Nothing changed.")
    gate, pending = await decisions.follow_gate(client, db, gate)
    if gate.decided:
        raise ScheduleRefused(await already_decided(db, gate))
    if pending is None or pending.interrupt_id != gate.interrupt_id:
        await approvals.claim_gate(db, gate.gate_id, decision="superseded", decided_by="newsroom",
                                   decided_via="state-check")
        raise ScheduleRefused("This draft is no longer waiting for approval. Nothing changed.")
    return await _claim(db, gate, publish_at=publish_at, tz=tz, reviewer=reviewer, via=via,
                        chat_id=chat_id if chat_id is not None else gate.chat_id, client=client)


async def _claim(db: Database, gate, *, publish_at: datetime, tz: str, reviewer: str, via: str,
                 chat_id: int | None, client) -> Schedule:
    if gate.decided:
        raise ScheduleRefused(await already_decided(db, gate))
    if chat_id is None:  # approved on the CLI: the post's own chat still hears when it publishes
        chat_id = gate.chat_id
        if chat_id is None:
            chat = ((await posts.get_post(db, gate.thread_id) or {}).get("metadata") or {}).get("chat_id")
            chat_id = int(chat) if chat is not None else None
    try:
        s, _token = await schedules.claim_and_schedule(db, gate_id=gate.gate_id, thread_id=gate.thread_id,
                                                       reviewer=reviewer, via=via, publish_at=publish_at, timezone=tz,
                                                       chat_id=chat_id)
    except schedules.GateTaken:
        raise ScheduleRefused(await already_decided(db, await approvals.get_gate(db, gate.gate_id))) from None
    await _record(db, s, "publish_scheduled", reviewer, via=via)
    await _mark_thread(client, s, s.thread_id)
    return s


async def already_decided(db: Database, gate) -> str:
    s = await schedules.live_schedule_for(db, gate.thread_id)
    if s is not None and s.gate_id == gate.gate_id:
        return (f"Already approved by {s.scheduled_by}: scheduled to publish at {rules.format_local(s.publish_at, s.timezone)} "
                f"(schedule {s.schedule_id}; `newsroom scheduled` / /scheduled reschedules or cancels it).")
    return decisions._already(gate)


async def list_scheduled(db: Database, *, chat_id: int | None = None, limit: int = 50) -> list[Schedule]:
    return await schedules.scheduled(db, chat_id=chat_id, limit=limit)


async def _find(db: Database, schedule_id: str) -> Schedule:
    s = await schedules.get_schedule(db, (schedule_id or "").strip().lower())
    if s is None:
        raise ScheduleRefused(f"No scheduled publish {schedule_id[:40]!r} (`newsroom scheduled` lists them). "
                              "Nothing changed.")
    if s.state != "scheduled":
        raise ScheduleRefused(f"Schedule {s.schedule_id} is {s.state} already. Nothing changed.")
    return s


async def reschedule(db: Database, schedule_id: str, *, when: str, tz: str | None, actor: str, client=None,
                     now: datetime | None = None) -> Schedule:
    s = await _find(db, schedule_id)
    tz = tz or s.timezone
    publish_at = rules.parse_publish_time(when, tz=tz, now=now or _now())
    moved = await schedules.reschedule(db, s.schedule_id, publish_at=publish_at, timezone=tz)
    if moved is None:
        raise ScheduleRefused(f"Schedule {s.schedule_id} fired or was canceled meanwhile. Nothing changed.")
    await _record(db, moved, "publish_rescheduled", actor, previous=s.publish_at.isoformat())
    await _mark_thread(client, moved, moved.thread_id)
    return moved


async def cancel(db: Database, schedule_id: str, *, actor: str, client=None) -> Schedule:
    s = await _find(db, schedule_id)
    done = await schedules.cancel(db, s.schedule_id, canceled_by=actor)
    if done is None:
        raise ScheduleRefused(f"Schedule {s.schedule_id} fired or was canceled meanwhile. Nothing changed.")
    await _record(db, done, "publish_schedule_canceled", actor)
    await _mark_thread(client, None, done.thread_id)
    return done


# --- firing --------------------------------------------------------------------------------------

# (thread_id, resume value, run config or None) -> run id (service.decisions.StartRun)
StartResume = decisions.StartRun


def server_resume(client) -> StartResume:
    """The resume as an Agent Server run. The thread may be one only our checkpointer knows (approved
    on the CLI): registered first, as recovery's server driver does."""

    async def _start(thread_id: str, value: dict[str, Any], config: dict[str, Any] | None = None) -> str:
        await client.threads.create(thread_id=thread_id, if_exists="do_nothing", graph_id=GRAPH_ID)
        run = await client.runs.create(thread_id, GRAPH_ID, command={"resume": value}, config=config,
                                       multitask_strategy="reject")
        return run["run_id"]

    return _start


def in_process_resume() -> StartResume:
    """The resume driven in this process on our checkpointer, under the thread's run lease (the
    CLI's `newsroom scheduled --fire-due`, no Agent Server). Returns when the run stops."""

    async def _start(thread_id: str, value: dict[str, Any], config: dict[str, Any] | None = None) -> str:
        from service.recovery import drive_leased

        snap = await drive_leased(thread_id, Command(resume=value), overrides=(config or {}).get("configurable") or {})
        if snap is None:
            raise RuntimeError("another process is running this thread right now")
        return f"in-process:{snap.checkpoint_id or ''}"

    return _start


class ScheduleSweepReport(SweepReport):
    fired: list[str] = Field(default_factory=list)
    recurring_started: list[str] = Field(default_factory=list)


async def fire_due(db: Database, start_resume: StartResume, *, report: ScheduleSweepReport | None = None,
                   notifier: Notifier | None = None, holder: str | None = None) -> list[Schedule]:
    """Deliver every due scheduled approval once: the row is fired by one caller only, then the
    ledger-issued resume goes to the run. A start that fails puts the row back (tried next pass)."""
    report = report if report is not None else ScheduleSweepReport()
    fired = await schedules.fire_due(db, holder=holder or holder_name())
    for s in fired:
        gate = await approvals.get_gate(db, s.gate_id)
        if gate is None or not gate.resume_token or gate.resumed_at is not None:
            continue  # the gate is gone or already consumed (delivered by recovery): nothing to send
        value = decisions.resume_value("approve", None, gate.decided_by or s.scheduled_by, gate.resume_token)
        overrides = await posts.run_overrides_of(db, s.thread_id)
        try:
            run_id = await start_resume(s.thread_id, value, {"configurable": overrides} if overrides else None)
        except Exception as err:  # noqa: BLE001 - put back, tried again next pass
            log.warning("scheduled publish %s of %s could not start: %s", s.schedule_id, s.thread_id, err)
            await schedules.unfire(db, s.schedule_id, f"{type(err).__name__}: {err}")
            report.errors.append(f"{s.thread_id}: scheduled publish did not start: {err}")
            continue
        await schedules.set_schedule_run(db, s.schedule_id, run_id)
        await approvals.set_gate_run(db, s.gate_id, run_id)
        await _record(db, s, "publish_schedule_fired", "sweep", run_id=run_id)
        report.fired.append(s.thread_id)
        chat = s.chat_id if s.chat_id is not None else gate.chat_id
        if notifier is not None and chat is not None:
            post = await posts.get_post(db, s.thread_id) or {}
            try:
                await notifier.notify(gate.model_copy(update={"chat_id": chat}), "scheduled", f"⏰ Publishing “{post.get('topic', '')}” now, as "
                                                         f"{s.scheduled_by} scheduled. /status {s.thread_id[-8:]} "
                                                         "shows where it went.")
            except Exception as err:  # noqa: BLE001 - the publish goes on; the notice is a courtesy
                report.errors.append(f"{s.thread_id}: notice failed: {err}")
    return fired


# --- recurring topics -----------------------------------------------------------------------------

def _rule(rec: Recurring) -> rules.Recurrence:
    at = f"{rules.WEEKDAYS[rec.weekday]} {rec.at_time}" if rec.weekday is not None else rec.at_time
    return rules.parse_recurrence(rec.every, at, tz=rec.timezone)


async def add_recurring(db: Database, *, every: str, at: str, topics: list[str], tz: str, created_by: str,
                        chat_id: int | None = None, run_overrides: dict | None = None,
                        now: datetime | None = None) -> Recurring:
    rule = rules.parse_recurrence(every, at, tz=tz)
    return await schedules.add_recurring(db, every=rule.every, at_time=f"{rule.at:%H:%M}", weekday=rule.weekday,
                                         timezone=rule.tz, topics=topics,
                                         next_run_at=rules.next_occurrence(rule, now or _now()),
                                         created_by=created_by, chat_id=chat_id, run_overrides=run_overrides)


def describe_recurring(rec: Recurring) -> str:
    nxt = rules.topic_for(rec.topics, rec.next_index)
    return (f"{rec.recurring_id} · {_rule(rec).describe()} · next {rules.format_local(rec.next_run_at, rec.timezone)}: "
            f"“{nxt[:60]}” · {len(rec.topics)} topics, {rec.next_index} run · by {rec.created_by}")


# (thread_id, graph input, run metadata, run config or None) -> run id
StartPost = Callable[[str, dict[str, Any], dict[str, Any], dict[str, Any] | None], Awaitable[str]]


def in_process_start_post() -> StartPost:
    async def _start(thread_id: str, graph_input: dict, metadata: dict, config: dict | None) -> str:
        from service.recovery import drive_leased

        snap = await drive_leased(thread_id, graph_input, overrides=(config or {}).get("configurable") or {},
                                  metadata=metadata)
        if snap is None:
            raise RuntimeError("another process is running this thread right now")
        return f"in-process:{snap.checkpoint_id or ''}"

    return _start


def server_start_post(client) -> StartPost:
    async def _start(thread_id: str, graph_input: dict, metadata: dict, config: dict | None) -> str:
        await client.threads.create(thread_id=thread_id, if_exists="do_nothing", graph_id=GRAPH_ID, metadata=metadata)
        run = await client.runs.create(thread_id, GRAPH_ID, input=graph_input, metadata=metadata, config=config,
                                       multitask_strategy="reject")
        return run["run_id"]

    return _start


@dataclass
class Occurrence:
    recurring_id: str
    thread_id: str
    topic: str


async def start_recurring(db: Database, start_post: StartPost, *, report: ScheduleSweepReport | None = None,
                          now: datetime | None = None) -> list[Occurrence]:
    """Start the post of every due recurring topic once. The occurrence's thread id is derived from
    (list, index): its post row is created first (idempotent), then the list is advanced by one
    conditional UPDATE; only the caller that advanced it starts the run. Missed occurrences (the
    server was down) collapse into one run now; the next is the first future time."""
    report = report if report is not None else ScheduleSweepReport()
    started: list[Occurrence] = []
    for rec in await schedules.due_recurring(db):
        tid = schedules.occurrence_thread_id(rec.recurring_id, rec.next_index)
        topic = rules.topic_for(rec.topics, rec.next_index)
        requester = rec.created_by
        meta = {"source": "schedule", "recurring_id": rec.recurring_id}
        if rec.chat_id is not None:
            meta["chat_id"] = rec.chat_id
        await posts.create_post(db, tid, topic, requester, source="schedule", metadata=meta,
                                run_overrides=dict(rec.run_overrides))
        after = max(now or _now(), rec.db_now or _now(), rec.next_run_at)
        if not await schedules.advance_recurring(db, rec, thread_id=tid, next_run_at=rules.next_occurrence(_rule(rec), after)):
            continue  # another sweeper took this occurrence
        graph_input = {"topic": topic, "requester": requester, "source": "schedule"}
        try:
            await start_post(tid, graph_input, meta, {"configurable": dict(rec.run_overrides)} if rec.run_overrides else None)
        except Exception as err:  # noqa: BLE001 - the post row waits queued: recovery starts it
            log.warning("recurring topic %s: post %s did not start (recovery starts it): %s", rec.recurring_id, tid, err)
            report.errors.append(f"{tid}: recurring post did not start: {err} (`newsroom recover` starts it)")
            continue
        await posts.record_event(db, tid, actor="sweep", kind="recurring_started",
                                 detail={"recurring_id": rec.recurring_id, "index": rec.next_index})
        report.recurring_started.append(tid)
        started.append(Occurrence(rec.recurring_id, tid, topic))
    return started


# --- the sweep, with schedules ---------------------------------------------------------------------

async def sweep_once(client, db: Database, settings: Settings, notifier: Notifier | None = None) -> ScheduleSweepReport:
    """service.sweep.sweep_once (reminders, escalation, expiry) plus the due scheduled
    publishes and recurring topics, through the Agent Server CLIENT."""
    report = ScheduleSweepReport()
    for step in (lambda: fire_due(db, server_resume(client), report=report, notifier=notifier),
                 lambda: start_recurring(db, server_start_post(client), report=report)):
        try:
            await step()
        except Exception as err:  # noqa: BLE001 - the deadline sweep still runs
            log.exception("scheduling sweep step failed")
            report.errors.append(f"scheduling: {err}")
    base = await sweep.sweep_once(client, db, settings, notifier)
    for name, values in base.model_dump().items():
        getattr(report, name).extend(values)
    return report


# --- the web page (service/web/routes.py) ----------------------------------------------------------

async def web_context(db: Database, thread_id: str) -> dict[str, Any]:
    """What the run page shows about scheduling: the pending schedule, the zone a typed time is read in."""
    s = await schedules.live_schedule_for(db, thread_id)
    tz = get_settings().timezone
    return {"schedule": s, "schedule_when": rules.format_local(s.publish_at, s.timezone) if s else None,
            "timezone": tz}


async def web_schedule(client, db: Database, gate_id: str, when: str, *, tz: str | None, reviewer: str) -> str:
    """The run page's "publish at" field: the flash message (scheduled, or why not; nothing changed then)."""
    try:
        zone_name = rules.zone(tz).key if (tz or "").strip() else get_settings().timezone
        s = await schedule_gate(client, db, gate_id, when=when, tz=zone_name, reviewer=reviewer, via="web")
    except (ScheduleError, ScheduleRefused) as err:
        text = str(err)
        return text if text.endswith("Nothing changed.") else f"{text}. Nothing changed."
    return (f"Approved: publishes at {rules.format_local(s.publish_at, s.timezone)} (schedule {s.schedule_id}; "
            f"`newsroom scheduled` or /scheduled moves or cancels it).")
