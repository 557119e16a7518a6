"""storage/connect.py: the process's Database per event loop, closed when asyncio.run shuts its loop down."""
from __future__ import annotations

import asyncio

import pytest


# A shutdown that waits on the pool's workers used to hang here (5 min, the suite's timeout): fail in 1.
@pytest.mark.timeout(60)
def test_the_process_database_is_closed_with_its_loop(pg_url):
    from storage.connect import get_database

    async def open_one():
        db = await get_database()
        assert await get_database() is db
        return db

    first = asyncio.run(open_one())
    assert first.pool.closed
    second = asyncio.run(open_one())
    assert second is not first and second.pool.closed
    # Used one statement at a time, a pool never grew past its first connection: a returned
    # connection is back in the pool before the next checkout (storage/db.py IdleCheckedPool).
    for db in (first, second):
        assert db.pool.get_stats().get("connections_num") == 1, db.pool.get_stats()
