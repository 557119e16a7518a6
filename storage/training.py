"""The learning loop's storage: draft rows, the decided posts the export reads, the adapter registry."""
from __future__ import annotations

import json
from typing import Any

from psycopg.types.json import Jsonb

from storage import training_sql as sql
from storage.db import Database


def _jsonb(obj: Any) -> Jsonb:
    return Jsonb(json.loads(json.dumps(obj, default=str)))


async def record_draft(db: Database, *, thread_id: str, version: int, title: str, body: str, content_hash: str,
                       model: str, prompt: str, reason: str, messages: list[dict], author: str = "writer") -> None:
    """The draft as written (a re-run of the same version replaces it: the graph keeps the last)."""
    params = {"thread_id": thread_id, "version": version, "title": title, "body": body,
              "content_hash": content_hash, "model": model, "prompt": prompt, "reason": reason,
              "author": author, "messages": _jsonb(messages)}
    # One upsert: its own implicit transaction (a re-run writes the same row), no BEGIN/COMMIT around it.
    await db.statement(sql.UPSERT_DRAFT, params)


async def drafts_of(db: Database, thread_id: str) -> list[dict]:
    return await db.fetch(sql.SELECT_DRAFTS_OF_POST, {"thread_id": thread_id})


async def decided_posts(db: Database) -> dict[str, list[dict]]:
    """Everything the export needs, in four reads: posts, drafts, decisions, publications."""
    posts = await db.fetch(sql.SELECT_DECIDED_POSTS)
    threads = [p["thread_id"] for p in posts]
    if not threads:
        return {"posts": [], "drafts": [], "decisions": [], "publications": []}
    args = {"threads": threads}
    return {
        "posts": posts,
        "drafts": await db.fetch(sql.SELECT_TRAINING_DRAFTS, args),
        "decisions": await db.fetch(sql.SELECT_TRAINING_DECISIONS, args),
        "publications": await db.fetch(sql.SELECT_TRAINING_PUBLICATIONS, args),
    }


# --- adapter registry ------------------------------------------------------------------------------

class AdapterNotFound(LookupError):
    pass


class AdapterStateError(ValueError):
    pass


async def register_adapter(db: Database, *, name: str, family: str, base_model: str, path: str,
                           data_sha256: str, manifest: dict) -> dict:
    """A trained adapter as a candidate (re-registering a candidate updates it; a decided one is refused)."""
    params = {"name": name, "family": family, "base_model": base_model, "path": path,
              "data_sha256": data_sha256, "manifest": _jsonb(manifest)}

    async def _work(conn):
        row = await (await conn.execute(sql.INSERT_ADAPTER, params)).fetchone()
        if row is None:
            current = await (await conn.execute(sql.SELECT_ADAPTER, {"name": name})).fetchone()
            raise AdapterStateError(f"adapter {name!r} is already {current['status']}: train under a new name")
        return dict(row)

    return await db.transaction(_work)


async def get_adapter(db: Database, name: str) -> dict | None:
    return await db.fetchone(sql.SELECT_ADAPTER, {"name": name})


async def promoted_adapter(db: Database, family: str) -> dict | None:
    return await db.fetchone(sql.SELECT_PROMOTED_ADAPTER, {"family": family})


async def list_adapters(db: Database, family: str | None = None) -> list[dict]:
    return await db.fetch(sql.LIST_ADAPTERS, {"family": family})


async def decide_adapter(db: Database, name: str, *, promote: bool, evaluation: dict) -> dict:
    """Record the evaluation; promote = the adapter becomes its family's promoted one and the one
    promoted before is retired, in one transaction. Returns the previous promoted row (or None) under
    "previous"."""

    async def _work(conn):
        row = await (await conn.execute(sql.SELECT_ADAPTER_FOR_UPDATE, {"name": name})).fetchone()
        if row is None:
            raise AdapterNotFound(f"no adapter named {name!r} (newsroom adapters list)")
        if row["status"] == "promoted":
            raise AdapterStateError(f"adapter {name!r} is already promoted")
        previous = await (await conn.execute(sql.SELECT_PROMOTED_FOR_UPDATE, {"family": row["family"]})).fetchone()
        if promote:
            if previous is not None:
                await conn.execute(sql.SET_ADAPTER_STATUS, {"name": previous["name"], "status": "retired",
                                                            "evaluation": None})
            status = "promoted"
        else:
            status = "refused"
        await conn.execute(sql.SET_ADAPTER_STATUS, {"name": name, "status": status, "evaluation": _jsonb(evaluation)})
        return {"name": name, "status": status, "previous": dict(previous) if previous else None}

    return await db.transaction(_work)


async def retire_adapter(db: Database, name: str) -> bool:
    """Take an adapter out of service (the family then has no promoted adapter until the next promotion)."""
    async def _work(conn):
        row = await (await conn.execute(sql.SELECT_ADAPTER_FOR_UPDATE, {"name": name})).fetchone()
        if row is None:
            raise AdapterNotFound(f"no adapter named {name!r}")
        await conn.execute(sql.SET_ADAPTER_STATUS, {"name": name, "status": "retired", "evaluation": None})
        return row["status"] != "retired"

    return await db.transaction(_work)


__all__ = [
    "AdapterNotFound",
    "AdapterStateError",
    "decide_adapter",
    "decided_posts",
    "drafts_of",
    "get_adapter",
    "list_adapters",
    "promoted_adapter",
    "record_draft",
    "register_adapter",
    "retire_adapter",
]
