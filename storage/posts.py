"""Posts as a persisted state machine, the append-only event log and the publication ledger."""
from __future__ import annotations

import json
import uuid
import weakref
from collections import OrderedDict
from decimal import Decimal
from enum import StrEnum
from typing import Any

from psycopg.types.json import Jsonb

from storage import sql
from storage.db import Database


class PostStatus(StrEnum):
    QUEUED = "queued"
    RESEARCHING = "researching"
    DRAFTING = "drafting"
    EDITING = "editing"
    AWAITING_APPROVAL = "awaiting_approval"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    REJECTED = "rejected"
    ESCALATED = "escalated"
    FAILED = "failed"


S = PostStatus
# The legal moves. Everything else is refused. escalated waits for a human like
# awaiting_approval (the same interrupt, marked escalated).
TRANSITIONS: dict[PostStatus, frozenset[PostStatus]] = {
    S.QUEUED: frozenset({S.RESEARCHING, S.REJECTED, S.FAILED}),
    S.RESEARCHING: frozenset({S.DRAFTING, S.REJECTED, S.FAILED}),
    # -> escalated: the run passed its budget after the Writer; the draft goes to a human unreviewed.
    S.DRAFTING: frozenset({S.EDITING, S.ESCALATED, S.REJECTED, S.FAILED}),
    S.EDITING: frozenset({S.DRAFTING, S.AWAITING_APPROVAL, S.ESCALATED, S.PUBLISHING, S.REJECTED, S.FAILED}),
    # -> editing: a human's edit of the draft goes through the Editor's citation check (issue 16).
    S.AWAITING_APPROVAL: frozenset({S.PUBLISHING, S.DRAFTING, S.EDITING, S.REJECTED, S.ESCALATED, S.FAILED}),
    S.ESCALATED: frozenset({S.PUBLISHING, S.DRAFTING, S.EDITING, S.REJECTED, S.FAILED}),
    S.PUBLISHING: frozenset({S.PUBLISHED, S.FAILED}),
    S.PUBLISHED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
WAITING_FOR_HUMAN = frozenset({S.AWAITING_APPROVAL, S.ESCALATED})


class IllegalTransition(ValueError):
    def __init__(self, thread_id: str, current: str, wanted: str):
        super().__init__(f"post {thread_id}: illegal transition {current} -> {wanted}")
        self.thread_id, self.current, self.wanted = thread_id, current, wanted


class PostNotFound(LookupError):
    pass


def _jsonb(obj: Any) -> Jsonb:
    return Jsonb(json.loads(json.dumps(obj, default=str)))


async def create_post(
    db: Database, thread_id: str, topic: str, requester: str, *, source: str = "cli", metadata: dict | None = None,
    run_overrides: dict | None = None,
) -> bool:
    """Create the post row (idempotent: False if it already existed) and its 'created' event.

    run_overrides: the run's per-run settings, kept as metadata["run_overrides"] when the row is
    created, or added to a row created earlier without them (a post accepted before its run
    started); never replaced once kept."""
    known = _ensured.setdefault(db, OrderedDict())
    if thread_id in known:
        return False  # created or pinned by an earlier call in this process: nothing left to do
    meta = dict(metadata or {})
    if run_overrides is not None:
        meta["run_overrides"] = run_overrides

    async def _work(conn):
        cur = await conn.execute(
            sql.INSERT_POST,
            {"thread_id": thread_id, "topic": topic, "requester": requester, "source": source,
             "metadata": _jsonb(meta)},
        )
        if await cur.fetchone() is None:
            if run_overrides is not None:
                await conn.execute(sql.PIN_POST_RUN_OVERRIDES,
                                   {"thread_id": thread_id, "pinned": _jsonb({"run_overrides": run_overrides})})
            return False
        await _insert_event(conn, thread_id, requester, "created", None, S.QUEUED, {"topic": topic, "source": source})
        return True

    created = await db.transaction(_work)
    if run_overrides is not None:  # the row exists and its overrides are kept: later calls change nothing
        known[thread_id] = None
        if len(known) > _ENSURED_MAX:
            known.popitem(last=False)
    return created


# Threads whose create_post has nothing left to do, per Database: the supervisor calls it on every
# visit (5 times in a post) and each call was a transaction of 4 round trips. A post row is never
# deleted, so the memo cannot go stale; it is bounded, and a forgotten thread only costs the call.
_ensured: weakref.WeakKeyDictionary[Database, OrderedDict[str, None]] = weakref.WeakKeyDictionary()
_ENSURED_MAX = 10_000


async def get_post(db: Database, thread_id: str) -> dict | None:
    return await db.fetchone(sql.SELECT_POST, {"thread_id": thread_id})


async def run_overrides_of(db: Database, thread_id: str) -> dict:
    """The per-run setting overrides kept with the post ({} when none were, or no post)."""
    row = await db.fetchone(sql.SELECT_POST_RUN_OVERRIDES, {"thread_id": thread_id})
    return dict((row or {}).get("run_overrides") or {})


async def run_overrides_if_posted(db: Database, thread_id: str) -> dict | None:
    """run_overrides_of, or None when there is no post (one read where a caller made two)."""
    row = await db.fetchone(sql.SELECT_POST_RUN_OVERRIDES, {"thread_id": thread_id})
    return None if row is None else dict(row.get("run_overrides") or {})


async def list_posts(db: Database, *, status: str | None = None, limit: int = 50) -> list[dict]:
    return await db.fetch(sql.LIST_POSTS, {"status": status, "limit": limit})


async def posts_in_status(db: Database, statuses: list[str]) -> list[dict]:
    return await db.fetch(sql.SELECT_POSTS_IN_STATUS, {"statuses": list(statuses)})


def _event_params(thread_id, actor, kind, from_status, to_status, detail) -> dict:
    return {"thread_id": thread_id, "actor": actor, "kind": kind,
            "from_status": str(from_status) if from_status else None,
            "to_status": str(to_status) if to_status else None, "detail": _jsonb(detail or {})}


async def _insert_event(conn, thread_id, actor, kind, from_status, to_status, detail) -> dict:
    cur = await conn.execute(sql.INSERT_EVENT, _event_params(thread_id, actor, kind, from_status, to_status, detail))
    return await cur.fetchone()


def _movable_to(to: PostStatus, unless_in: tuple[PostStatus, ...]) -> list[str]:
    """The statuses a move to `to` may start from; the post in `to` or in `unless_in` is left alone."""
    return [str(s) for s, nxt in TRANSITIONS.items() if to in nxt and s != to and s not in unless_in]


def _transition_params(thread_id, to, actor, reason, detail, revision, unless_in) -> dict:
    return {"thread_id": thread_id, "to_status": str(to), "reason": reason, "revision": revision, "actor": actor,
            "movable": _movable_to(to, unless_in), "detail": _jsonb({"reason": reason, **(detail or {})})}


def _after_move(thread_id: str, to: PostStatus, row: dict | None, unless_in, reason) -> dict:
    """What TRANSITION_POSTGRES did, as _transition_in reports it (or raises)."""
    if row is None:
        raise PostNotFound(f"no post for thread {thread_id}")
    moved = row.pop("moved")
    current = PostStatus(row["status"])
    if moved:
        return dict(row, status=str(to), status_reason=reason)
    if current == to or current in unless_in:
        return row  # idempotent: see _transition_in
    raise IllegalTransition(thread_id, current, to)


async def _transition_in(conn, thread_id, to_status, actor, reason, detail, revision, unless_in=(), *,
                         dialect: str = "cockroachdb") -> dict:
    to = PostStatus(to_status)
    if dialect == "postgres":  # one statement (sql.TRANSITION_POSTGRES)
        cur = await conn.execute(sql.TRANSITION_POSTGRES,
                                 _transition_params(thread_id, to, actor, reason, detail, revision, unless_in))
        return _after_move(thread_id, to, await cur.fetchone(), unless_in, reason)
    cur = await conn.execute(sql.SELECT_POST_FOR_UPDATE, {"thread_id": thread_id})
    post = await cur.fetchone()
    if post is None:
        raise PostNotFound(f"no post for thread {thread_id}")
    current = PostStatus(post["status"])
    if current == to or current in unless_in:
        # Idempotent: a node that re-runs after a crash or resume repeats its transition; one whose
        # later step already committed (unless_in, e.g. published) leaves the post where it is.
        return post
    if to not in TRANSITIONS[current]:
        raise IllegalTransition(thread_id, current, to)
    await conn.execute(
        sql.UPDATE_POST_STATUS,
        {"thread_id": thread_id, "from_status": current, "to_status": to, "reason": reason, "revision": revision},
    )
    await _insert_event(conn, thread_id, actor, "transition", current, to, {"reason": reason, **(detail or {})})
    post = dict(post, status=str(to), status_reason=reason)
    return post


async def transition(
    db: Database, thread_id: str, to_status: str, *, actor: str, reason: str | None = None,
    detail: dict | None = None, revision: int | None = None, unless_in: tuple[str, ...] = (),
) -> dict:
    """Move a post to to_status, recording an event; illegal moves raise IllegalTransition.
    A post already in one of `unless_in` is left alone (a replayed step whose successor committed)."""
    skip = tuple(PostStatus(s) for s in unless_in)
    to = PostStatus(to_status)
    if db.dialect == "postgres":
        rows = await db.statement(sql.TRANSITION_POSTGRES,
                                  _transition_params(thread_id, to, actor, reason, detail, revision, skip))
        return _after_move(thread_id, to, rows[0] if rows else None, skip, reason)

    async def _work(conn):
        return await _transition_in(conn, thread_id, to, actor, reason, detail, revision, skip, dialect=db.dialect)

    return await db.transaction(_work)


class NotRetryable(ValueError):
    """The post has not failed: there is nothing to run again."""


async def reopen_failed(db: Database, thread_id: str, *, actor: str) -> str:
    """A failed post back to the status it failed in, for a retry from its last checkpoint
    (`newsroom retry`). failed stays terminal for the graph's own moves: only this explicit, logged
    step (event kind 'retry') leaves it. Idempotent: a post whose last event is that step is left
    as it is (a retry cut off before its run started). Returns the status the post is in."""

    async def _work(conn):
        post = await (await conn.execute(sql.SELECT_POST_FOR_UPDATE, {"thread_id": thread_id})).fetchone()
        if post is None:
            raise PostNotFound(f"no post for thread {thread_id}")
        if post["status"] != PostStatus.FAILED:
            last = await (await conn.execute(sql.SELECT_LAST_EVENT, {"thread_id": thread_id})).fetchone()
            if last and last["kind"] == "retry" and last["to_status"] == post["status"]:
                return post["status"]
            raise NotRetryable(f"post {thread_id} is {post['status']}, not failed: nothing to retry")
        row = await (await conn.execute(sql.SELECT_STATUS_BEFORE_FAILURE, {"thread_id": thread_id})).fetchone()
        back = PostStatus(row["from_status"]) if row and row["from_status"] else PostStatus.QUEUED
        await conn.execute(sql.UPDATE_POST_STATUS, {"thread_id": thread_id, "from_status": PostStatus.FAILED,
                                                    "to_status": back, "reason": None, "revision": None})
        await _insert_event(conn, thread_id, actor, "retry", PostStatus.FAILED, back,
                            {"failed_with": post["status_reason"]})
        return str(back)

    return await db.transaction(_work)


async def record_event(db: Database, thread_id: str, *, actor: str, kind: str, detail: dict | None = None) -> dict:
    rows = await db.statement(sql.INSERT_EVENT, _event_params(thread_id, actor, kind, None, None, detail))
    return rows[0]


async def list_events(db: Database, thread_id: str) -> list[dict]:
    return await db.fetch(sql.LIST_EVENTS, {"thread_id": thread_id})


async def record_human_decision(
    db: Database, thread_id: str, *, reviewer: str, decision: str, payload_hash: str,
    checkpoint_id: str | None, detail: dict | None = None,
) -> bool:
    """Record a human decision once per checkpoint it answered. False if already recorded."""

    event = {"decision": decision, "payload_hash": payload_hash, "checkpoint_id": checkpoint_id, **(detail or {})}

    async def _work(conn):
        if checkpoint_id and db.dialect == "postgres":
            cur = await conn.execute(sql.INSERT_DECISION_EVENT_POSTGRES,
                                     {"thread_id": thread_id, "actor": reviewer, "detail": _jsonb(event)})
            return await cur.fetchone() is not None
        if checkpoint_id:
            cur = await conn.execute(sql.SELECT_DECISION_EVENT, {"thread_id": thread_id, "checkpoint_id": checkpoint_id})
            if await cur.fetchone():
                return False
        await _insert_event(conn, thread_id, reviewer, "human_decision", None, None, event)
        return True

    return await db.transaction(_work)


# --- publications ------------------------------------------------------------------------

async def get_publication(db: Database, publish_key: str) -> dict | None:
    return await db.fetchone(sql.SELECT_PUBLICATION, {"publish_key": publish_key})


async def publications_for(db: Database, thread_id: str) -> list[dict]:
    return await db.fetch(sql.SELECT_PUBLICATIONS_FOR_THREAD, {"thread_id": thread_id})


async def count_publications(db: Database) -> int:
    row = await db.fetchone(sql.COUNT_PUBLICATIONS)
    return int(row["n"])


async def record_publication(
    db: Database, *, publish_key: str, thread_id: str, destination: str, location: str,
    draft_hash: str, title: str, actor: str = "publisher", complete: bool = True,
) -> bool:
    """Insert the ledger row and, when it completes the post (`complete`: every other destination
    has its row), mark the post published, in ONE transaction.

    Returns False if this publish key was already recorded (a replay): nothing changes.
    """
    return await insert_publication(db, publish_key=publish_key, thread_id=thread_id, destination=destination,
                                    location=location, draft_hash=draft_hash, title=title, actor=actor,
                                    complete=complete) is not None


async def insert_publication(
    db: Database, *, publish_key: str, thread_id: str, destination: str, location: str,
    draft_hash: str, title: str, actor: str = "publisher", complete: bool = True,
) -> dict | None:
    """record_publication returning the ledger row it inserted (the caller need not read it back),
    or None when the key was already recorded (nothing changed)."""

    async def _work(conn):
        cur = await conn.execute(
            sql.INSERT_PUBLICATION,
            {"publish_key": publish_key, "thread_id": thread_id, "destination": destination,
             "location": location, "draft_hash": draft_hash, "title": title},
        )
        row = await cur.fetchone()
        if row is None:
            return None
        if complete:
            await _transition_in(conn, thread_id, S.PUBLISHED, actor, None,
                                 {"publish_key": publish_key, "location": location}, None, dialect=db.dialect)
        return row

    return await db.transaction(_work)


# --- LLM usage -------------------------------------------------------------------------------

# llm_calls.id is a UUID; callers may key a call by any stable string (say "thread:node:attempt").
_CALL_ID_NAMESPACE = uuid.UUID("6f1d8f8e-5b7a-4c1e-9a53-2f0c7e1d4b90")


def call_uuid(call_id: str | uuid.UUID) -> str:
    """The llm_calls id of a call key: a UUID as it is, any other key as a stable uuid5 of it."""
    text = str(call_id)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(_CALL_ID_NAMESPACE, text))


async def record_llm_call(
    db: Database, *, thread_id: str | None, role: str, provider: str, endpoint: str, model: str,
    tokens_in: int, tokens_out: int, cost_usd: float, latency_ms: int, outcome: str, error: str | None = None,
    call_id: str | None = None,
) -> str:
    """Log one LLM call and add its usage to the post's running totals, in one transaction.

    Exactly once per call_id (generated if not given; returned): if the retry helper re-runs a
    transaction whose COMMIT did land, the row is found and the usage is not added again.
    """
    call_id = call_uuid(call_id) if call_id else str(uuid.uuid4())
    params = {"id": call_id, "thread_id": thread_id, "role": role, "provider": provider, "endpoint": endpoint,
              "model": model, "tokens_in": tokens_in, "tokens_out": tokens_out,
              "cost_usd": Decimal(str(round(cost_usd, 6))), "latency_ms": latency_ms, "outcome": outcome,
              "error": (error or None) and error[:2000]}
    await _record_call(db, params)
    return call_id


async def _record_call(db: Database, params: dict) -> bool:
    if db.dialect == "postgres":  # one statement (sql.RECORD_LLM_CALL_POSTGRES)
        rows = await db.statement(sql.RECORD_LLM_CALL_POSTGRES, params)
        return bool(rows[0]["inserted"])
    return await db.transaction(lambda conn: _record_call_in(conn, params))


async def _record_call_in(conn, params: dict) -> bool:
    """Insert the llm_calls row; only if it is new, add its usage to the post. True = counted."""
    cur = await conn.execute(sql.INSERT_LLM_CALL, params)
    if await cur.fetchone() is None:
        return False  # already recorded by an earlier attempt (or an earlier call with this id)
    if params["thread_id"]:
        await _add_usage_in(conn, params["thread_id"], params["tokens_in"], params["tokens_out"], params["cost_usd"])
    return True


async def _add_usage_in(conn, thread_id: str, tokens_in: int, tokens_out: int, cost: Decimal) -> None:
    # An in-place increment: concurrent calls on one post are the contended path the SERIALIZABLE
    # tests exercise (one of two writers on the row retries); no post row, nothing to add to.
    await conn.execute(sql.ADD_POST_USAGE, {"thread_id": thread_id, "tokens_in": tokens_in,
                                            "tokens_out": tokens_out, "cost_usd": cost})


async def add_post_usage(db: Database, thread_id: str, *, call_id: str, tokens_in: int, tokens_out: int,
                         cost_usd: float, role: str = "external", provider: str = "external",
                         endpoint: str = "external", model: str = "unknown") -> bool:
    """Add one LLM call's usage (made outside the gateway) to the post, at most once per call_id.

    The key is required: the usage is written as that call's llm_calls row in the same transaction
    as the totals, so a replayed node or a re-run transaction with the same call_id finds the row
    and adds nothing (False). The post's totals stay equal to the sum of its llm_calls rows.
    """
    params = {"id": call_uuid(call_id), "thread_id": thread_id, "role": role, "provider": provider,
              "endpoint": endpoint, "model": model, "tokens_in": tokens_in, "tokens_out": tokens_out,
              "cost_usd": Decimal(str(round(cost_usd, 6))), "latency_ms": 0, "outcome": "ok", "error": None}
    return await _record_call(db, params)


async def llm_calls_for(db: Database, thread_id: str) -> list[dict]:
    return await db.fetch(sql.LIST_LLM_CALLS, {"thread_id": thread_id})


async def usage_for(db: Database, thread_id: str) -> dict:
    return await db.fetchone(sql.SUM_LLM_CALLS, {"thread_id": thread_id})


__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "WAITING_FOR_HUMAN",
    "IllegalTransition",
    "NotRetryable",
    "PostNotFound",
    "PostStatus",
    "add_post_usage",
    "call_uuid",
    "count_publications",
    "create_post",
    "get_post",
    "get_publication",
    "insert_publication",
    "list_events",
    "list_posts",
    "llm_calls_for",
    "posts_in_status",
    "publications_for",
    "record_event",
    "record_human_decision",
    "record_llm_call",
    "record_publication",
    "reopen_failed",
    "run_overrides_if_posted",
    "run_overrides_of",
    "transition",
    "usage_for",
]
