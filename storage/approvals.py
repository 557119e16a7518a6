"""Approval gates: the ledger that makes a human decision happen once, whatever the channel.

A gate is one approval interrupt of one thread (thread_id, interrupt_id). Channels register the
gate when they show it, claim it with a conditional UPDATE before resuming the run, and the sweep
reads the open ones to remind, escalate or expire them.
"""
from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from storage import approvals_sql as q
from storage.db import Database


class Gate(BaseModel):
    gate_id: str
    thread_id: str
    interrupt_id: str
    draft_version: int = 0
    chat_id: int | None = None
    message_ids: list[int] = Field(default_factory=list)
    waiting_since: datetime
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    decision: str | None = None
    decided_by: str | None = None
    decided_via: str | None = None
    decided_at: datetime | None = None
    feedback: str | None = None  # the revise feedback or reject reason claimed with the decision
    run_id: str | None = None
    draft_hash: str | None = None  # hash of the draft this gate showed (title + body)
    resume_token: str | None = Field(default=None, repr=False)  # issued with the claim: the only accepted resume
    resumed_at: datetime | None = None  # when the interrupt consumed the token
    edited_draft: str | None = Field(default=None, repr=False)  # edit / approve_with_edits: the human's Markdown
    edited_hash: str | None = None  # the hash of the draft version that edit becomes
    section: str | None = None  # revise: the one section heading to rewrite

    @property
    def decided(self) -> bool:
        return self.decided_at is not None


class OpenGate(Gate):
    post_status: str
    topic: str
    db_now: datetime


class Prompt(BaseModel):
    chat_id: int
    message_id: int
    gate_id: str
    action: str
    asked_user: int


# decided_via of a gate closed because its draft was asked again at a new interrupt (reask_gate):
# a press on its buttons follows to the gate now asked, instead of answering "already decided".
REASKED = "reasked"
HUMAN_DECISIONS = ("approve", "revise", "reject", "edit", "approve_with_edits")
EDIT_DECISIONS = ("edit", "approve_with_edits")


def new_gate_id() -> str:
    # Short: it travels in Telegram callback_data (64 bytes at most) as "nr:<action>:<gate_id>".
    return secrets.token_hex(6)


def new_resume_token() -> str:
    # 192 random bits: the capability to resume one interrupt with the decision claimed for it.
    return secrets.token_urlsafe(24)


async def register_gate(
    db: Database, *, thread_id: str, interrupt_id: str, draft_version: int, chat_id: int | None = None,
    waiting_since: datetime | None = None, draft_hash: str | None = None,
) -> Gate:
    """The gate for this interrupt, created on first sight (idempotent across channels)."""
    params: dict[str, Any] = {"gate_id": new_gate_id(), "thread_id": thread_id, "interrupt_id": interrupt_id,
                              "draft_version": draft_version, "chat_id": chat_id, "waiting_since": waiting_since,
                              "draft_hash": draft_hash}

    async def _work(conn):
        row = await (await conn.execute(q.REGISTER_GATE, params)).fetchone()
        return row or await (await conn.execute(q.SELECT_GATE_FOR_INTERRUPT, params)).fetchone()

    return Gate.model_validate(await db.transaction(_work))


async def get_gate(db: Database, gate_id: str) -> Gate | None:
    row = await db.fetchone(q.SELECT_GATE, {"gate_id": gate_id})
    return Gate.model_validate(row) if row else None


async def gate_for_interrupt(db: Database, thread_id: str, interrupt_id: str) -> Gate | None:
    row = await db.fetchone(q.SELECT_GATE_FOR_INTERRUPT, {"thread_id": thread_id, "interrupt_id": interrupt_id})
    return Gate.model_validate(row) if row else None


async def gates_for_thread(db: Database, thread_id: str) -> list[Gate]:
    return [Gate.model_validate(r) for r in await db.fetch(q.SELECT_GATES_FOR_THREAD, {"thread_id": thread_id})]


async def open_gates(db: Database) -> list[OpenGate]:
    return [OpenGate.model_validate(r) for r in await db.fetch(q.SELECT_OPEN_GATES)]


async def add_gate_messages(db: Database, gate_id: str, message_ids: list[int]) -> None:
    async def _work(conn):
        await conn.execute(q.ADD_GATE_MESSAGES, {"gate_id": gate_id, "message_ids": Jsonb(list(message_ids))})

    await db.transaction(_work)


async def claim_gate(db: Database, gate_id: str, *, decision: str, decided_by: str, decided_via: str,
                     feedback: str | None = None, run_id: str | None = None, edited_draft: str | None = None,
                     edited_hash: str | None = None, section: str | None = None) -> str | None:
    """The gate token for exactly one caller per gate (the one allowed to resume the run), None for
    the others. `feedback` is the decision's text (revise: for the writer, reject: the reason),
    kept for recovery's re-delivery; an edit keeps its Markdown (`edited_draft`) and the hash of the
    draft it becomes, a revise the one `section` to rewrite, the same way. The token is what the resume value must carry: the graph's
    interrupt accepts no other answer (graphs/engine.human_approval)."""
    # "superseded" (the sweep or a state check closing a gate) is no decision: no token to resume with.
    token = new_resume_token() if decision in HUMAN_DECISIONS else None

    async def _work(conn):
        cur = await conn.execute(q.CLAIM_GATE, {"gate_id": gate_id, "decision": decision, "decided_by": decided_by,
                                                "decided_via": decided_via, "feedback": feedback,
                                                "resume_token": token, "run_id": run_id,
                                                "edited_draft": edited_draft, "edited_hash": edited_hash,
                                                "section": section})
        return (token or decision) if await cur.fetchone() is not None else None

    return await db.transaction(_work)


async def issue_missing_token(db: Database, gate_id: str) -> str | None:
    """The token of a claimed gate, issued now if it was claimed before gate tokens existed."""

    async def _work(conn):
        row = await (await conn.execute(q.ISSUE_MISSING_TOKEN, {"gate_id": gate_id,
                                                               "resume_token": new_resume_token()})).fetchone()
        return row["resume_token"] if row else None

    return await db.transaction(_work)


async def consume_gate_token(db: Database, thread_id: str, interrupt_id: str, token: str | None,
                             checkpoint: str | None, *, draft_hash: str | None = None) -> Gate | None:
    """The claimed gate of this interrupt if `token` is the one its claim issued (compared in
    constant time) and the gate showed the draft `draft_hash` (recorded now if it was not), marked
    consumed at `checkpoint`; None otherwise (a raw or forged resume, a token of another gate, one
    already consumed at another checkpoint, a gate that showed another draft)."""
    gate = await gate_for_interrupt(db, thread_id, interrupt_id)
    if gate is None or not gate.decided or not gate.resume_token or not token:
        return None
    if not secrets.compare_digest(token.encode(), gate.resume_token.encode()):
        return None
    if draft_hash is not None and gate.draft_hash not in (None, draft_hash):
        return None

    async def _work(conn):
        cur = await conn.execute(q.CONSUME_GATE_TOKEN, {"gate_id": gate.gate_id, "checkpoint": checkpoint or ""})
        if await cur.fetchone() is None:
            return False
        if draft_hash is not None:
            await conn.execute(q.SET_GATE_DRAFT_HASH, {"gate_id": gate.gate_id, "draft_hash": draft_hash})
        return True

    return await get_gate(db, gate.gate_id) if await db.transaction(_work) else None


async def approved_gates(db: Database, thread_id: str) -> list[dict]:
    """Gates of this thread a human approved and whose resume the interrupt accepted."""
    return await db.fetch(q.SELECT_APPROVED_GATES, {"thread_id": thread_id})


async def reask_gate(db: Database, gate_id: str, interrupt_id: str) -> Gate | None:
    """The same draft asked again at a new interrupt (an invalid answer given elsewhere makes the
    graph ask again): the gate of that interrupt takes over from `gate_id`. Created here if no
    channel showed it yet, with the old gate's chat and waiting time; the old gate's messages are
    added to it (so closing it takes their buttons off too) and the old gate, if still open, is
    closed as superseded via 'reasked'. Its reminder/escalation marks carry over too (one reminder
    per draft, not per interrupt). Returns the gate of `interrupt_id` (None: no such gate_id)."""

    async def _work(conn):
        old = await (await conn.execute(q.SELECT_GATE, {"gate_id": gate_id})).fetchone()
        if old is None:
            return None
        params = {"gate_id": new_gate_id(), "thread_id": old["thread_id"], "interrupt_id": interrupt_id,
                  "draft_version": old["draft_version"], "chat_id": old["chat_id"],
                  "waiting_since": old["waiting_since"], "draft_hash": old.get("draft_hash")}
        await conn.execute(q.INSERT_GATE, params)
        new = await (await conn.execute(q.SELECT_GATE_FOR_INTERRUPT, params)).fetchone()
        if new["gate_id"] != old["gate_id"]:
            if old["chat_id"] is not None:
                await conn.execute(q.SET_GATE_CHAT, {"gate_id": new["gate_id"], "chat_id": old["chat_id"]})
            await conn.execute(q.CARRY_GATE_MARKS, {"gate_id": new["gate_id"], "reminded_at": old["reminded_at"],
                                                    "escalated_at": old["escalated_at"]})
            moved = [m for m in (old["message_ids"] or []) if m not in (new["message_ids"] or [])]
            if moved:
                await conn.execute(q.ADD_GATE_MESSAGES, {"gate_id": new["gate_id"], "message_ids": Jsonb(moved)})
            await conn.execute(q.CLAIM_GATE, {"gate_id": old["gate_id"], "decision": "superseded",
                                              "decided_by": "newsroom", "decided_via": REASKED, "feedback": None,
                                              "resume_token": None, "run_id": None, "edited_draft": None,
                                              "edited_hash": None, "section": None})
        return await (await conn.execute(q.SELECT_GATE, {"gate_id": new["gate_id"]})).fetchone()

    row = await db.transaction(_work)
    return Gate.model_validate(row) if row else None


async def release_gate(db: Database, gate_id: str, *, decided_by: str, run_id: str | None = None) -> None:
    """Undo a claim whose resume never ran (its token was not consumed), so it can be answered again."""
    async def _work(conn):
        await conn.execute(q.RELEASE_GATE, {"gate_id": gate_id, "decided_by": decided_by, "run_id": run_id})

    await db.transaction(_work)


async def set_gate_run(db: Database, gate_id: str, run_id: str) -> None:
    async def _work(conn):
        await conn.execute(q.SET_GATE_RUN, {"gate_id": gate_id, "run_id": run_id})

    await db.transaction(_work)


async def _mark_once(db: Database, statement: str, gate_id: str) -> bool:
    async def _work(conn):
        return await (await conn.execute(statement, {"gate_id": gate_id})).fetchone() is not None

    return await db.transaction(_work)


async def mark_reminded(db: Database, gate_id: str) -> bool:
    """True once per gate: the sweep sends its single reminder only when this wins."""
    return await _mark_once(db, q.MARK_GATE_REMINDED, gate_id)


async def mark_escalated(db: Database, gate_id: str) -> bool:
    return await _mark_once(db, q.MARK_GATE_ESCALATED, gate_id)


async def add_prompt(db: Database, *, chat_id: int, message_id: int, gate_id: str, action: str, asked_user: int) -> None:
    async def _work(conn):
        await conn.execute(q.INSERT_PROMPT, {"chat_id": chat_id, "message_id": message_id, "gate_id": gate_id,
                                             "action": action, "asked_user": asked_user})

    await db.transaction(_work)


async def get_prompt(db: Database, *, chat_id: int, message_id: int) -> Prompt | None:
    row = await db.fetchone(q.SELECT_PROMPT, {"chat_id": chat_id, "message_id": message_id})
    return Prompt.model_validate(row) if row else None


async def posts_for_chat(db: Database, chat_id: int, *, limit: int = 10) -> list[dict]:
    return await db.fetch(q.LIST_POSTS_FOR_CHAT, {"chat_id": str(chat_id), "limit": limit})


_THREAD_PART = re.compile(r"^[0-9a-fA-F-]{6,64}$")


async def thread_ids_matching(db: Database, text: str, *, limit: int = 3) -> list[str]:
    """Thread ids of posts that are TEXT, or start or end with it (6+ hex characters): the exact
    match first, then newest first, at most LIMIT."""
    text = text.strip().lower()
    if not _THREAD_PART.match(text):
        return []
    rows = await db.fetch(q.FIND_THREAD_IDS_BY_PART, {"exact": text, "prefix": text + "%", "suffix": "%" + text,
                                                       "limit": limit})
    if rows and rows[0]["thread_id"] == text:
        return [text]
    return [r["thread_id"] for r in rows]


async def resolve_thread_id(db: Database, text: str) -> str | None:
    """A full thread id, or an unambiguous start or end of one. Server thread ids are time-ordered
    (UUIDv7-like), so their first characters are shared by posts started close together: the
    last 8 characters are what people type."""
    found = await thread_ids_matching(db, text, limit=2)
    return found[0] if len(found) == 1 else None


__all__ = [
    "EDIT_DECISIONS",
    "HUMAN_DECISIONS",
    "REASKED",
    "Gate",
    "OpenGate",
    "Prompt",
    "add_gate_messages",
    "add_prompt",
    "approved_gates",
    "claim_gate",
    "consume_gate_token",
    "gate_for_interrupt",
    "gates_for_thread",
    "get_gate",
    "get_prompt",
    "issue_missing_token",
    "mark_escalated",
    "mark_reminded",
    "new_resume_token",
    "open_gates",
    "posts_for_chat",
    "reask_gate",
    "register_gate",
    "release_gate",
    "resolve_thread_id",
    "set_gate_run",
    "thread_ids_matching",
]
