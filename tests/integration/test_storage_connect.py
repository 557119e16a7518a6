"""storage/connect.py: the process's Database per event loop, closed when asyncio.run shuts its loop down."""
from __future__ import annotations

import asyncio


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
