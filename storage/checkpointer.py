"""Checkpointer factory: AsyncPostgresSaver on PostgreSQL, AsyncCockroachDBSaver on CockroachDB.

`checkpointer` is the async context manager that langgraph.json's "checkpointer.path" names;
the CLI and tests use the same one, so every run's checkpoints land in our database.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from config import Settings, get_settings
from storage import sql
from storage.db import Database, IdleCheck, resolve_database_url
from storage.migrate import migrate, under_lease

log = logging.getLogger(__name__)


def _saver_pool(url: str, s: Settings) -> AsyncConnectionPool:
    # Same sizing and health check as the app pool; the savers need autocommit + dict rows,
    # and prepare_threshold=0 keeps them correct behind connection poolers.
    return AsyncConnectionPool(
        url,
        min_size=s.pool_min_size,
        max_size=s.pool_max_size,
        max_idle=s.pool_max_idle_s,
        timeout=s.pool_timeout_s,
        check=(freshness := IdleCheck(s.pool_check_idle_s)).check,
        reset=freshness.returned,
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
    """AsyncPostgresSaver whose writes and point reads survive a dropped connection.

    Its writes are upserts (safe to repeat) and the pool replaces a broken connection on the next
    checkout, so a database restart mid-write costs a retry instead of the run.
    """
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    from storage.db import is_retryable

    def _count(state) -> None:
        exc = state.outcome.exception() if state.outcome else None
        code = getattr(exc, "sqlstate", None) or type(exc).__name__
        SAVER_RETRIES[code] = SAVER_RETRIES.get(code, 0) + 1

    def _retrying():
        return AsyncRetrying(retry=retry_if_exception(is_retryable), stop=stop_after_attempt(8),
                             wait=wait_random_exponential(multiplier=0.05, max=2.0), before_sleep=_count,
                             reraise=True)

    class RetryingPostgresSaver(AsyncPostgresSaver):
        async def aput(self, config, checkpoint, metadata, new_versions):
            async for attempt in _retrying():
                with attempt:
                    return await super().aput(config, checkpoint, metadata, new_versions)

        async def aput_writes(self, config, writes, task_id, task_path=""):
            async for attempt in _retrying():
                with attempt:
                    return await super().aput_writes(config, writes, task_id, task_path)

        async def aget_tuple(self, config):
            async for attempt in _retrying():
                with attempt:
                    return await super().aget_tuple(config)

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
