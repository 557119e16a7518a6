"""The pool survives a restart of the embedded server; a transaction in flight is retried.

Runs on a private embedded server (its own data dir), so restarting it cannot disturb other
test modules sharing the session server.
"""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from config import load_settings
from storage.db import Database
from storage.embedded import restart_embedded, start_embedded, stop_embedded
from storage.migrate import migrate
from storage.posts import create_post, get_post, list_events, transition


@pytest.fixture(scope="module")
def private_pg(session_dir):
    data_dir = (session_dir / "state" / "pg-restart").resolve()
    url = start_embedded(data_dir)
    yield data_dir, url
    stop_embedded(data_dir)


@pytest.fixture(scope="module")
async def rdb(private_pg):
    _, url = private_pg
    s = load_settings(database_url=url, pool_min_size=2, pool_max_size=4, pool_timeout_s=30)
    database = await Database(url, s, name="restart").open()
    await migrate(database)
    yield database
    await database.close()


async def _backend_pid(db: Database) -> int:
    row = await db.fetchone("SELECT pg_backend_pid() AS pid, pg_postmaster_start_time() AS started")
    return row["pid"]


async def _postmaster_started(db: Database):
    return (await db.fetchone("SELECT pg_postmaster_start_time() AS t"))["t"]


async def test_pool_survives_restart_between_two_queries(private_pg, rdb):
    data_dir, _ = private_pg
    tid = f"restart-{uuid.uuid4().hex[:8]}"
    assert await create_post(rdb, tid, "before restart", "tester")
    started_before = await _postmaster_started(rdb)

    t0 = time.perf_counter()
    await asyncio.to_thread(restart_embedded, data_dir)
    restart_s = time.perf_counter() - t0

    # Same Database object, no reopen: the health check replaces the dead connections.
    post = await get_post(rdb, tid)
    assert post is not None and post["topic"] == "before restart"  # data kept across restart
    assert await _postmaster_started(rdb) > started_before  # it really is a new server process
    await transition(rdb, tid, "researching", actor="after-restart")
    assert (await get_post(rdb, tid))["status"] == "researching"
    # And again, several times in a row.
    for _ in range(2):
        await asyncio.to_thread(restart_embedded, data_dir)
        assert (await get_post(rdb, tid))["status"] == "researching"
    print(f"\nrestart took {restart_s:.2f}s; pool stats {rdb.pool.get_stats()}")


async def test_transaction_in_flight_across_restart_is_retried(private_pg, rdb):
    data_dir, _ = private_pg
    tid = f"inflight-{uuid.uuid4().hex[:8]}"
    await create_post(rdb, tid, "in flight", "tester")
    attempts: list[int] = []
    first_attempt_reached = asyncio.Event()
    restarted = asyncio.Event()
    retries_before = rdb.stats.retries

    async def work(conn):
        attempts.append(await _pid(conn))
        # Statement 1 ran inside the transaction; now the server goes away under us.
        await conn.execute("SELECT status FROM posts WHERE thread_id = %(t)s FOR UPDATE", {"t": tid})
        if len(attempts) == 1:
            first_attempt_reached.set()
            await restarted.wait()
        # Statement 2: on the first attempt this hits the dead connection.
        await conn.execute(
            "UPDATE posts SET status_reason = %(r)s WHERE thread_id = %(t)s", {"r": "written once", "t": tid})
        return len(attempts)

    async def restart_when_ready():
        await first_attempt_reached.wait()
        await asyncio.to_thread(restart_embedded, data_dir)
        restarted.set()

    result, _ = await asyncio.gather(rdb.transaction(work), restart_when_ready())
    assert result == len(attempts) >= 2, attempts
    assert attempts[0] != attempts[-1]  # the retry ran on a new server session
    assert rdb.stats.retries - retries_before >= 1
    post = await get_post(rdb, tid)
    assert post["status_reason"] == "written once"
    # The interrupted attempt left nothing behind; the retried one committed exactly once.
    assert [e["kind"] for e in await list_events(rdb, tid)] == ["created"]
    print(f"\nin-flight transaction: {len(attempts)} attempts, retried after "
          f"{ {k: v for k, v in rdb.stats.by_sqlstate.items()} }")


async def _pid(conn) -> int:
    return (await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone())["pid"]


async def test_unchecked_recent_connections_are_replaced_by_the_retry(private_pg):
    """With the checkout check effectively off (recently used connections skip it), a restart
    still costs no failed call: the dead connection's 08xxx error is retried on a new one."""
    data_dir, url = private_pg
    s = load_settings(database_url=url, pool_min_size=2, pool_max_size=2, pool_check_idle_s=3600)
    database = await Database(url, s, name="unchecked").open()
    try:
        tid = f"unchecked-{uuid.uuid4().hex[:8]}"
        await create_post(database, tid, "unchecked", "tester")
        for _ in range(3):  # every pooled connection has been used and returned: none is checked
            await get_post(database, tid)
        retries_before = database.stats.retries
        await asyncio.to_thread(restart_embedded, data_dir)
        assert (await get_post(database, tid))["topic"] == "unchecked"
        await transition(database, tid, "researching", actor="after-restart")
        assert (await get_post(database, tid))["status"] == "researching"
        assert database.stats.retries > retries_before  # the dead connection was really met
    finally:
        await database.close()
