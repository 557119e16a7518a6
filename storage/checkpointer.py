"""Checkpointer factory: AsyncPostgresSaver on PostgreSQL, AsyncCockroachDBSaver on CockroachDB.

`checkpointer` is the async context manager that langgraph.json's "checkpointer.path" names;
the CLI and tests use the same one, so every run's checkpoints land in our database.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from config import Settings, get_settings
from storage import sql
from storage.db import Database, IdleCheckedPool, resolve_database_url
from storage.migrate import migrate, under_lease

log = logging.getLogger(__name__)


def _saver_pool(url: str, s: Settings) -> AsyncConnectionPool:
    # Same sizing and health check as the app pool; the savers need autocommit + dict rows,
    # and prepare_threshold=0 keeps them correct behind connection poolers.
    return IdleCheckedPool(
        url,
        min_size=s.pool_min_size,
        max_size=s.pool_max_size,
        max_idle=s.pool_max_idle_s,
        timeout=s.pool_timeout_s,
        check_idle_s=s.pool_check_idle_s,
        reconnect_timeout=max(60.0, s.pool_timeout_s),
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        name="newsroom-checkpoints",
        open=False,
    )


# The typed-state models that may sit in channel values (a desk subgraph hands back validated
# models). Named, not imported: storage imports nothing above it. Anything else unknown is refused.
STATE_TYPES: tuple[tuple[str, str], ...] = (
    ("agents.models", "Citation"), ("agents.models", "ResearchNotes"), ("agents.models", "Draft"),
    ("agents.models", "Review"), ("agents.models", "HumanDecision"), ("agents.models", "Publication"),
    ("agents.editor", "EditorVerdict"), ("agents.editor", "DimensionReasoning"), ("graphs.state", "PostState"),
    ("agents.models", "ResearchPlan"), ("agents.models", "SubQuestion"), ("agents.models", "RetrievalResult"),
    ("agents.models", "Candidate"), ("agents.models", "FetchedSource"), ("agents.models", "DraftOutline"),
    ("agents.editor", "CitationReport"), ("agents.editor", "ClaimResult"),
    ("agents.models", "CostEstimate"), ("agents.models", "EstimatedStep"), ("agents.models", "BudgetStop"),
    # The Editor's models now live in agents.models; the agents.editor names above stay, because
    # checkpoints written before the move name that module (agents.editor still re-exports them).
    ("agents.models", "EditorVerdict"), ("agents.models", "DimensionReasoning"),
    ("agents.models", "CitationReport"), ("agents.models", "ClaimResult"),
)


def make_serde() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)


def make_saver(pool: AsyncConnectionPool, dialect: str) -> BaseCheckpointSaver:
    if dialect == "cockroachdb":
        # The Postgres saver's SQL uses nested arrays CockroachDB lacks; this one retries 40001.
        from langchain_cockroachdb import AsyncCockroachDBSaver

        return AsyncCockroachDBSaver(pool, serde=make_serde())
    return _retrying_postgres_saver_class()(pool, serde=make_serde())


# Retries the Postgres saver made in this process, by SQLSTATE (the contention drill prints them).
SAVER_RETRIES: dict[str, int] = {}


@functools.lru_cache(maxsize=1)
def _retrying_postgres_saver_class():
    """AsyncPostgresSaver with a cheaper write path, whose writes and point reads survive a dropped
    connection.

    - No saver-wide lock: the library takes one asyncio.Lock around EVERY call, even on a pool, so
      all runs of a server queued behind each other's checkpoint writes. Each call here gets its
      own pooled connection, which needs no lock.
    - One statement per checkpoint (with its blobs) and one per task's writes (storage/
      checkpoint_sql.py), serialised inline: the library sends a statement per blob and per write
      and hands each serialisation to a thread (asyncio.to_thread), which for a state of a few kB
      cost more than the work.
    - Retries: its writes are upserts (safe to repeat) and the pool replaces a broken connection on
      the next checkout, so a database restart mid-write costs a retry instead of the run; the first
      attempt runs outside tenacity.
    Same tables and conflict rules as the library (tests/integration/test_storage_conformance.py runs the
    checkpointer conformance suite against this class).
    """
    from langgraph.checkpoint.base import WRITES_IDX_MAP, get_serializable_checkpoint_metadata
    from langgraph.checkpoint.postgres import _ainternal
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.serde.types import _DeltaSnapshot
    from psycopg.types.json import Jsonb
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    from storage import checkpoint_sql as q
    from storage.db import is_retryable

    def _note(exc: BaseException | None) -> None:
        code = getattr(exc, "sqlstate", None) or type(exc).__name__
        SAVER_RETRIES[code] = SAVER_RETRIES.get(code, 0) + 1

    async def _retrying(call):
        try:
            return await call()
        except Exception as exc:  # noqa: BLE001 - classified right below
            if not is_retryable(exc):
                raise
            _note(exc)
        await asyncio.sleep(random.uniform(0, 0.05))  # then as tenacity below: 8 attempts in all
        async for attempt in AsyncRetrying(retry=retry_if_exception(is_retryable), stop=stop_after_attempt(7),
                                           wait=wait_random_exponential(multiplier=0.1, max=2.0),
                                           before_sleep=lambda state: _note(state.outcome.exception()),
                                           reraise=True):
            with attempt:
                return await call()

    class RetryingPostgresSaver(AsyncPostgresSaver):
        @asynccontextmanager
        async def _cursor(self, *, pipeline: bool = False):
            if self.pipe is not None or not isinstance(self.conn, AsyncConnectionPool):
                async with super()._cursor(pipeline=pipeline) as cur:  # a single connection: the lock is needed
                    yield cur
                return
            async with _ainternal.get_connection(self.conn) as conn:
                if pipeline:
                    async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                        yield cur
                else:
                    async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                        yield cur

        async def aput(self, config, checkpoint, metadata, new_versions):
            return await _retrying(lambda: self._put(config, checkpoint, metadata, new_versions))

        async def _put(self, config, checkpoint, metadata, new_versions):
            # What AsyncPostgresSaver.aput does, as one statement.
            configurable = config["configurable"].copy()
            thread_id = configurable.pop("thread_id")
            checkpoint_ns = configurable.pop("checkpoint_ns")
            parent_id = configurable.pop("checkpoint_id", None)
            copy = checkpoint.copy()
            copy["channel_values"] = copy["channel_values"].copy()
            blob_values = {}
            for k, v in checkpoint["channel_values"].items():
                if isinstance(v, _DeltaSnapshot):
                    blob_values[k] = copy["channel_values"].pop(k)
                    copy["channel_values"][k] = True
                elif v is None or isinstance(v, (str, int, float, bool)):
                    pass
                else:
                    blob_values[k] = copy["channel_values"].pop(k)
            blob_versions = {k: v for k, v in new_versions.items() if k in blob_values}
            blobs = self._dump_blobs(thread_id, checkpoint_ns, blob_values, blob_versions)
            params = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint["id"],
                      "parent_checkpoint_id": parent_id, "checkpoint": Jsonb(copy),
                      "metadata": Jsonb(get_serializable_checkpoint_metadata(config, metadata)),
                      "channels": [b[2] for b in blobs], "versions": [b[3] for b in blobs],
                      "types": [b[4] for b in blobs], "blobs": [b[5] for b in blobs]}
            async with self._cursor() as cur:
                await cur.execute(q.PUT_CHECKPOINT, params)
            return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
                                     "checkpoint_id": checkpoint["id"]}}

        async def aput_writes(self, config, writes, task_id, task_path=""):
            return await _retrying(lambda: self._put_writes(config, writes, task_id, task_path))

        async def _put_writes(self, config, writes, task_id, task_path):
            if not writes:
                return
            upsert = all(w[0] in WRITES_IDX_MAP for w in writes)
            c = config["configurable"]
            rows = self._dump_writes(c["thread_id"], c["checkpoint_ns"], c["checkpoint_id"], task_id, task_path,
                                     writes)
            if upsert:  # one-by-one upserts: the last write of an idx wins
                rows = list({r[5]: r for r in rows}.values())
            params = {"thread_id": c["thread_id"], "checkpoint_ns": c["checkpoint_ns"],
                      "checkpoint_id": c["checkpoint_id"], "task_id": task_id, "task_path": task_path,
                      "idx": [r[5] for r in rows], "channels": [r[6] for r in rows], "types": [r[7] for r in rows],
                      "blobs": [r[8] for r in rows]}
            async with self._cursor() as cur:
                await cur.execute(q.PUT_WRITES_UPSERT if upsert else q.PUT_WRITES_INSERT, params)

        async def aget_tuple(self, config):
            return await _retrying(lambda: super(RetryingPostgresSaver, self).aget_tuple(config))

    return RetryingPostgresSaver


async def _saver_schema_behind(db: Database, saver: BaseCheckpointSaver) -> bool:
    migrations = getattr(saver, "MIGRATIONS", None)
    if not migrations:
        return True
    try:
        row = await db.fetchone(sql.SELECT_SAVER_MIGRATION_VERSION)
    except psycopg.errors.UndefinedTable:
        return True
    return row is None or row["v"] is None or row["v"] < len(migrations) - 1


@asynccontextmanager
async def checkpointer(settings: Settings | None = None) -> AsyncIterator[BaseCheckpointSaver]:
    """Yield a saver on our database (embedded PostgreSQL when DATABASE_URL is unset)."""
    s = settings or get_settings()
    url = await asyncio.to_thread(resolve_database_url, s)
    db = await Database(url, s, name="newsroom-migrate").open()
    pool = _saver_pool(url, s)
    try:
        await migrate(db)
        await pool.open(wait=True, timeout=s.pool_timeout_s)
        saver = make_saver(pool, db.dialect)

        async def _setup(_holder: str) -> None:
            await saver.setup()  # the saver's own migrations; not safe to race, so under our lease

        # Only when the saver's schema is behind: every drive() opens a checkpointer, and taking
        # the global lease each time serialised concurrent runs and, after a SIGKILL of its holder,
        # stalled every run for the lease's 120 s (found by evals/chaos/crash_resume.py).
        if await _saver_schema_behind(db, saver):
            await under_lease(db, _setup)
        log.info("checkpointer ready: %s on %s", type(saver).__name__, db.dialect)
        yield saver
    finally:
        await pool.close()
        await db.close()
