"""Scheduled publishes, chat time zones, recurring topics and send intents (SQL in schedules_sql.py).

A scheduled publish is an approval claimed now and delivered later: the gate's claim (the same
conditional UPDATE every channel uses, storage/approvals.py) and the schedule row are written in
one transaction, so there is never a claimed approval without its time (recovery would deliver
it at once) nor a schedule for a gate someone else decided.
"""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from storage import approvals_sql
from storage import schedules_sql as q
from storage.approvals import new_resume_token
from storage.db import Database


class Schedule(BaseModel):
    schedule_id: str
    gate_id: str
    thread_id: str
    publish_at: datetime
    timezone: str
    state: str
    scheduled_by: str
    scheduled_via: str
    chat_id: int | None = None
    fired_at: datetime | None = None
    fired_by: str | None = None
    run_id: str | None = None
    canceled_at: datetime | None = None
    canceled_by: str | None = None
    last_error: str | None = None
    created_at: datetime
    topic: str = ""
    db_now: datetime | None = None


class Recurring(BaseModel):
    recurring_id: str
    every: str
    at_time: str
    weekday: int | None = None
    timezone: str
    topics: list[str]
    next_index: int
    next_run_at: datetime
    created_by: str
    chat_id: int | None = None
    run_overrides: dict = {}
    last_thread_id: str | None = None
    last_run_at: datetime | None = None
    canceled_at: datetime | None = None
    db_now: datetime | None = None


def new_schedule_id() -> str:
    return secrets.token_hex(4)  # short: typed in /scheduled cancel ID and carried in callback data


class GateTaken(Exception):
    """The gate was decided (or scheduled) by someone else first: nothing was scheduled."""


async def claim_and_schedule(db: Database, *, gate_id: str, thread_id: str, reviewer: str, via: str,
                             publish_at: datetime, timezone: str, chat_id: int | None) -> tuple[Schedule, str]:
    """Claim the gate as `approve` for REVIEWER and schedule its delivery at PUBLISH_AT, in one
    transaction. Returns the schedule and the gate token; raises GateTaken when another decision
    came first."""
    token = new_resume_token()
    params = {"schedule_id": new_schedule_id(), "gate_id": gate_id, "thread_id": thread_id, "publish_at": publish_at,
              "timezone": timezone, "scheduled_by": reviewer, "scheduled_via": via, "chat_id": chat_id}

    async def _work(conn):
        cur = await conn.execute(approvals_sql.CLAIM_GATE, {
            "gate_id": gate_id, "decision": "approve", "decided_by": reviewer, "decided_via": via, "feedback": None,
            "resume_token": token, "run_id": None, "edited_draft": None, "edited_hash": None, "section": None})
        if await cur.fetchone() is None:
            return None
        await conn.execute(q.INSERT_SCHEDULE, params)
        return await (await conn.execute(q.SELECT_SCHEDULE, params)).fetchone()

    row = await db.transaction(_work)
    if row is None:
        raise GateTaken(gate_id)
    return Schedule.model_validate(row), token


async def get_schedule(db: Database, schedule_id: str) -> Schedule | None:
    row = await db.fetchone(q.SELECT_SCHEDULE, {"schedule_id": schedule_id})
    return Schedule.model_validate(row) if row else None


async def live_schedule_for(db: Database, thread_id: str) -> Schedule | None:
    row = await db.fetchone(q.SELECT_LIVE_SCHEDULE_FOR_THREAD, {"thread_id": thread_id})
    return Schedule.model_validate(row) if row else None


async def scheduled(db: Database, *, chat_id: int | None = None, limit: int = 50) -> list[Schedule]:
    rows = await db.fetch(q.LIST_SCHEDULED, {"chat_id": chat_id, "limit": limit})
    return [Schedule.model_validate(r) for r in rows]


async def reschedule(db: Database, schedule_id: str, *, publish_at: datetime, timezone: str) -> Schedule | None:
    """The new time, if the schedule is still pending (None: fired, canceled or unknown)."""
    async def _work(conn):
        return await (await conn.execute(q.RESCHEDULE, {"schedule_id": schedule_id, "publish_at": publish_at,
                                                        "timezone": timezone})).fetchone()

    return await get_schedule(db, schedule_id) if await db.transaction(_work) else None


async def cancel(db: Database, schedule_id: str, *, canceled_by: str) -> Schedule | None:
    """Cancel a pending schedule and release its gate's claim in the same transaction, so the draft
    waits for a decision again (None: already fired, canceled or unknown)."""
    async def _work(conn):
        row = await (await conn.execute(q.CANCEL_SCHEDULE, {"schedule_id": schedule_id,
                                                             "canceled_by": canceled_by})).fetchone()
        if row is None:
            return None
        await conn.execute(approvals_sql.RELEASE_GATE, {"gate_id": row["gate_id"], "decided_by": row["scheduled_by"],
                                                        "run_id": None})
        return row

    return await get_schedule(db, schedule_id) if await db.transaction(_work) else None


async def fire_due(db: Database, *, holder: str, limit: int = 20) -> list[Schedule]:
    """The due schedules this caller fires (each row is returned to exactly one caller)."""
    statement = q.FIRE_DUE_COCKROACHDB if db.dialect == "cockroachdb" else q.FIRE_DUE_POSTGRES

    async def _work(conn):
        return await (await conn.execute(statement, {"holder": holder, "limit": limit})).fetchall()

    rows = await db.transaction(_work)
    return [Schedule.model_validate({**r, "topic": ""}) for r in rows]


async def set_schedule_run(db: Database, schedule_id: str, run_id: str) -> None:
    async def _work(conn):
        await conn.execute(q.SET_SCHEDULE_RUN, {"schedule_id": schedule_id, "run_id": run_id})

    await db.transaction(_work)


async def unfire(db: Database, schedule_id: str, error: str) -> None:
    async def _work(conn):
        await conn.execute(q.UNFIRE_SCHEDULE, {"schedule_id": schedule_id, "error": error[:500]})

    await db.transaction(_work)


# --- chat time zones ------------------------------------------------------------------------------

async def set_chat_timezone(db: Database, chat_id: int, timezone: str, *, updated_by: str) -> None:
    async def _work(conn):
        await conn.execute(q.UPSERT_CHAT_TIMEZONE, {"chat_id": chat_id, "timezone": timezone, "updated_by": updated_by})

    await db.transaction(_work)


async def chat_timezone(db: Database, chat_id: int) -> str | None:
    row = await db.fetchone(q.SELECT_CHAT_TIMEZONE, {"chat_id": chat_id})
    return row["timezone"] if row else None


# --- recurring topics -----------------------------------------------------------------------------

def occurrence_thread_id(recurring_id: str, index: int) -> str:
    """The thread of occurrence INDEX: the same for every sweeper and every replay."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"newsroom:recurring:{recurring_id}:{index}"))


async def add_recurring(db: Database, *, every: str, at_time: str, weekday: int | None, timezone: str,
                        topics: list[str], next_run_at: datetime, created_by: str, chat_id: int | None,
                        run_overrides: dict | None = None) -> Recurring:
    params: dict[str, Any] = {"recurring_id": secrets.token_hex(4), "every": every, "at_time": at_time,
                              "weekday": weekday, "timezone": timezone, "topics": Jsonb(list(topics)),
                              "next_run_at": next_run_at, "created_by": created_by, "chat_id": chat_id,
                              "run_overrides": Jsonb(dict(run_overrides or {}))}

    async def _work(conn):
        return await (await conn.execute(q.INSERT_RECURRING, params)).fetchone()

    return Recurring.model_validate(await db.transaction(_work))


async def recurring(db: Database) -> list[Recurring]:
    return [Recurring.model_validate(r) for r in await db.fetch(q.LIST_RECURRING)]


async def get_recurring(db: Database, recurring_id: str) -> Recurring | None:
    row = await db.fetchone(q.SELECT_RECURRING, {"recurring_id": recurring_id})
    return Recurring.model_validate(row) if row else None


async def due_recurring(db: Database, *, limit: int = 20) -> list[Recurring]:
    return [Recurring.model_validate(r) for r in await db.fetch(q.DUE_RECURRING, {"limit": limit})]


async def advance_recurring(db: Database, rec: Recurring, *, thread_id: str, next_run_at: datetime) -> bool:
    """True for the one caller that moves REC past its current occurrence."""
    async def _work(conn):
        return await (await conn.execute(q.ADVANCE_RECURRING, {
            "recurring_id": rec.recurring_id, "index": rec.next_index, "next_run_at": next_run_at,
            "thread_id": thread_id})).fetchone() is not None

    return await db.transaction(_work)


async def cancel_recurring(db: Database, recurring_id: str, *, canceled_by: str) -> Recurring | None:
    async def _work(conn):
        return await (await conn.execute(q.CANCEL_RECURRING, {"recurring_id": recurring_id,
                                                               "canceled_by": canceled_by})).fetchone()

    return await get_recurring(db, recurring_id) if await db.transaction(_work) else None


# --- send intents (tools/publish.py) --------------------------------------------------------------

async def record_intent(db: Database, *, publish_key: str, thread_id: str, destination: str, draft_hash: str,
                        title: str) -> bool:
    """True if this send's intent is new; False if one was recorded before (a send started and its
    outcome is unknown)."""
    async def _work(conn):
        return await (await conn.execute(q.INSERT_INTENT, {
            "publish_key": publish_key, "thread_id": thread_id, "destination": destination, "draft_hash": draft_hash,
            "title": title})).fetchone() is not None

    return await db.transaction(_work)


async def open_intents(db: Database, thread_id: str, destination: str) -> list[dict]:
    return await db.fetch(q.SELECT_OPEN_INTENTS, {"thread_id": thread_id, "destination": destination})


async def get_intent(db: Database, publish_key: str) -> dict | None:
    return await db.fetchone(q.SELECT_INTENT, {"publish_key": publish_key})


async def clear_intent(db: Database, publish_key: str) -> None:
    """The send is known not to have happened (a definite refusal) or a human asked to send again."""
    async def _work(conn):
        await conn.execute(q.DELETE_INTENT, {"publish_key": publish_key})

    await db.transaction(_work)
