"""Our saver's write path stores exactly what langgraph-checkpoint-postgres' own saver stores.

storage.checkpointer's saver writes a checkpoint with its blobs in one statement and a task's
writes in one statement (storage/checkpoint_sql.py) instead of one statement per row, without the
library's saver-wide lock. The same sequence of puts goes through the upstream AsyncPostgresSaver
(one thread) and through ours (another): the rows must be the same, field for field, and so must
what aget_tuple reads back. The conformance suite (test_storage_conformance.py) covers the rest.
"""
from __future__ import annotations

import asyncio
import uuid

from langgraph.checkpoint.base import WRITES_IDX_MAP, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from storage.checkpointer import checkpointer, make_serde

ERROR, INTERRUPT = "__error__", "__interrupt__"  # special channels: a fixed idx each (WRITES_IDX_MAP)
assert ERROR in WRITES_IDX_MAP and INTERRUPT in WRITES_IDX_MAP
TS = "2026-12-01T00:00:00+00:00"

ROWS = {
    "checkpoints": "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata FROM checkpoints "
                   "WHERE thread_id = %(t)s ORDER BY checkpoint_ns, checkpoint_id",
    "checkpoint_blobs": "SELECT checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs "
                        "WHERE thread_id = %(t)s ORDER BY checkpoint_ns, channel, version",
    "checkpoint_writes": "SELECT checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob "
                         "FROM checkpoint_writes WHERE thread_id = %(t)s ORDER BY checkpoint_ns, checkpoint_id, task_id, idx",
}


async def _sequence(saver, tid: str, ids: list[str]) -> None:
    """Three checkpoints with changing channels, normal writes (one repeated: the first is kept),
    special-channel writes (one index written twice in a call: the last wins), an empty write list,
    and a subgraph namespace."""
    config = {"configurable": {"thread_id": tid, "checkpoint_ns": ""}}
    state = {"topic": "GQA", "drafts": [{"v": 1, "body": "x" * 3000}], "revision": 0, "flag": None}
    for step, cid in enumerate(ids):
        if step:
            state = dict(state, drafts=[*state["drafts"], {"v": step + 1}], revision=step)
        versions = {k: f"{step + 1:032}.0.1" for k in state if step == 0 or k in ("drafts", "revision")}
        cp = dict(empty_checkpoint(), id=cid, ts=TS, channel_values=dict(state), channel_versions=versions)
        config = await saver.aput(config, cp, {"source": "loop", "step": step, "parents": {}}, versions)
        await saver.aput_writes(config, [("drafts", {"v": 9}), ("revision", 5)], f"task-{step}")
        await saver.aput_writes(config, [("drafts", {"v": 10})], f"task-{step}")  # same (task, idx): kept first
        await saver.aput_writes(config, [(ERROR, "boom"), (INTERRUPT, {"a": 1}), (INTERRUPT, {"a": 2})],
                                f"special-{step}")
        await saver.aput_writes(config, [], f"empty-{step}")
    sub = {"configurable": {"thread_id": tid, "checkpoint_ns": "researcher:abc"}}
    cp = dict(empty_checkpoint(), id=ids[0], ts=TS, channel_values={"plan": ["q1", "q2"]},
              channel_versions={"plan": "1.0"})
    await saver.aput(sub, cp, {"source": "loop", "step": 0, "parents": {"": ids[-1]}}, {"plan": "1.0"})


async def _rows(db, tid: str) -> dict:
    return {table: await db.fetch(query, {"t": tid}) for table, query in ROWS.items()}


async def test_same_rows_as_the_library_saver(db):
    ids = [str(uuid6(clock_seq=i)) for i in range(3)]
    theirs_tid, ours_tid = f"lib-{uuid.uuid4().hex[:8]}", f"ours-{uuid.uuid4().hex[:8]}"
    async with checkpointer() as ours:
        assert type(ours) is not AsyncPostgresSaver  # ours is the subclass with the batched writes
        upstream = AsyncPostgresSaver(ours.conn, serde=make_serde())
        await _sequence(upstream, theirs_tid, ids)
        await _sequence(ours, ours_tid, ids)
        theirs_rows, ours_rows = await _rows(db, theirs_tid), await _rows(db, ours_tid)
        for table in ROWS:
            assert ours_rows[table] == theirs_rows[table], table
        assert len(ours_rows["checkpoint_blobs"]) >= 4 and len(ours_rows["checkpoint_writes"]) == 3 * 4
        interrupts = [r for r in ours_rows["checkpoint_writes"] if r["channel"] == INTERRUPT]
        assert len(interrupts) == 3  # one per checkpoint: the second write of the idx replaced the first
        got = await ours.aget_tuple({"configurable": {"thread_id": ours_tid, "checkpoint_ns": ""}})
        want = await upstream.aget_tuple({"configurable": {"thread_id": theirs_tid, "checkpoint_ns": ""}})
        assert got.checkpoint["channel_values"] == want.checkpoint["channel_values"]
        assert got.pending_writes == want.pending_writes


async def test_calls_on_a_pool_do_not_queue_behind_one_lock(db):
    """The library's saver takes one asyncio.Lock around every call even on a pool: a call waiting
    for a slow statement held up every other run's checkpoint. Ours does not queue them."""
    async with checkpointer() as ours:
        async with ours.conn.connection() as held:  # a statement that takes a while, on its own connection
            slow = asyncio.create_task(held.execute("SELECT pg_sleep(1.0)"))
            await asyncio.sleep(0.1)
            tid = f"nolock-{uuid.uuid4().hex[:8]}"
            t0 = asyncio.get_running_loop().time()
            async with ours._cursor() as cur:  # noqa: SLF001 - the path every call takes
                await cur.execute("SELECT 1")
            await ours.aget_tuple({"configurable": {"thread_id": tid, "checkpoint_ns": ""}})
            elapsed = asyncio.get_running_loop().time() - t0
            await slow
        assert elapsed < 0.8, elapsed
