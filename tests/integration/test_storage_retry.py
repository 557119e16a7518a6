"""The transaction helper's bounds: a transaction that always hits a real 40001 ends with
TransactionRetryExhausted after exactly the configured attempts; other errors are not retried.
"""
from __future__ import annotations

import itertools
import time
import uuid

import psycopg
import pytest
from psycopg_pool import PoolClosed, PoolTimeout

from config import load_settings
from storage.db import Database, TransactionRetryExhausted, is_retryable
from storage.posts import create_post, get_post


@pytest.fixture(scope="module")
async def small_db(pg_url, db):
    """tx_max_attempts=3 from settings; pool big enough for the interfering writer."""
    s = load_settings(database_url=pg_url, tx_max_attempts=3, pool_min_size=2, pool_max_size=4)
    database = await Database(pg_url, s, name="retry").open()
    yield database
    await database.close()


def _always_conflicting(db: Database, tid: str, attempts: list[float]):
    """Work that reads the post, lets another session commit an update to it, then writes it:
    under SERIALIZABLE the server refuses our write with 40001, on every attempt."""

    async def work(conn):
        attempts.append(time.perf_counter())
        row = await (await conn.execute(
            "SELECT tokens_in FROM posts WHERE thread_id = %(t)s", {"t": tid})).fetchone()
        async with db.pool.connection() as other:  # a second, autocommit session
            await other.execute("UPDATE posts SET tokens_out = tokens_out + 1 WHERE thread_id = %(t)s", {"t": tid})
        await conn.execute("UPDATE posts SET tokens_in = %(v)s WHERE thread_id = %(t)s",
                           {"v": row["tokens_in"] + 1000, "t": tid})

    return work


async def test_always_40001_exhausts_after_configured_attempts(small_db):
    db = small_db
    tid = f"retry-{uuid.uuid4().hex[:8]}"
    await create_post(db, tid, "retry", "tester")
    attempts: list[float] = []
    retries_before, commits_before = db.stats.retries, db.stats.commits
    t0 = time.perf_counter()
    with pytest.raises(TransactionRetryExhausted) as info:
        await db.transaction(_always_conflicting(db, tid, attempts))
    elapsed = time.perf_counter() - t0

    assert len(attempts) == 3 == db.settings.tx_max_attempts
    msg = str(info.value)
    assert "after 3 attempts" in msg and "40001" in msg
    assert isinstance(info.value.__cause__, psycopg.errors.SerializationFailure)
    assert db.stats.retries - retries_before == 2  # slept between attempts 1-2 and 2-3
    assert db.stats.commits == commits_before
    # Jittered backoff between attempts, bounded: 0.01 * 2^n seconds at most.
    assert elapsed < 3.0
    post = await get_post(db, tid)
    assert post["tokens_in"] == 0  # none of our writes committed
    assert post["tokens_out"] == 3  # the interfering session's did, once per attempt
    print(f"\n3 attempts in {elapsed * 1000:.0f} ms, gaps "
          f"{[round((b - a) * 1000) for a, b in itertools.pairwise(attempts)]} ms: {msg}")


async def test_explicit_attempts_override(small_db):
    db = small_db
    tid = f"retry-{uuid.uuid4().hex[:8]}"
    await create_post(db, tid, "retry", "tester")
    attempts: list[float] = []
    with pytest.raises(TransactionRetryExhausted, match="after 7 attempts"):
        await db.transaction(_always_conflicting(db, tid, attempts), attempts=7)
    assert len(attempts) == 7


async def test_conflict_that_clears_is_retried_to_success(small_db):
    db = small_db
    tid = f"retry-{uuid.uuid4().hex[:8]}"
    await create_post(db, tid, "retry", "tester")
    attempts: list[float] = []
    conflicting = _always_conflicting(db, tid, attempts)

    async def work(conn):
        if len(attempts) < 2:
            return await conflicting(conn)  # attempts 1 and 2 collide
        attempts.append(time.perf_counter())
        await conn.execute("UPDATE posts SET tokens_in = tokens_in + 1000 WHERE thread_id = %(t)s", {"t": tid})
        return "done"

    assert await db.transaction(work) == "done"
    assert len(attempts) == 3
    post = await get_post(db, tid)
    assert (post["tokens_in"], post["tokens_out"]) == (1000, 2)


async def test_non_retryable_error_raised_at_once(small_db):
    db = small_db
    calls = 0

    async def work(conn):
        nonlocal calls
        calls += 1
        await conn.execute("SELECT 1 / 0")

    with pytest.raises(psycopg.errors.DivisionByZero):
        await db.transaction(work)
    assert calls == 1


async def test_pool_timeout_is_not_multiplied_by_retries(pg_url, db):
    """Pool exhausted: one pool_timeout_s wait and a PoolTimeout, not tx_max_attempts of them."""
    s = load_settings(database_url=pg_url, pool_min_size=1, pool_max_size=1, pool_timeout_s=0.5,
                      tx_max_attempts=10)
    async with Database(pg_url, s, name="tiny") as tiny, tiny.pool.connection():  # hold the only connection
        t0 = time.perf_counter()
        with pytest.raises(PoolTimeout):
            await tiny.fetch("SELECT 1")
        elapsed = time.perf_counter() - t0
    assert 0.4 < elapsed < 2.0, elapsed
    with pytest.raises(PoolClosed):
        await tiny.fetch("SELECT 1")


def test_retryable_classification():
    # Real exception classes psycopg raises for these SQLSTATEs.
    retry = [psycopg.errors.SerializationFailure(), psycopg.errors.AdminShutdown(),
             psycopg.errors.CannotConnectNow(), psycopg.errors.ConnectionFailure(),
             psycopg.OperationalError("server closed the connection unexpectedly")]
    no_retry = [psycopg.errors.UniqueViolation(), psycopg.errors.DivisionByZero(),
                psycopg.errors.SyntaxError(), PoolTimeout("t"), PoolClosed("c"), ValueError("x")]
    assert [is_retryable(e) for e in retry] == [True] * len(retry)
    assert [is_retryable(e) for e in no_retry] == [False] * len(no_retry)
    assert psycopg.errors.lookup("40003").__name__ == "StatementCompletionUnknown"
    assert is_retryable(psycopg.errors.lookup("40003")())
