"""The process's Database for the running event loop: opened and migrated on first use, closed with
the loop (storage/loop_scoped.py). Its own module so that storage/db.py (the connection layer) and
storage/migrate.py (which runs on a Database) do not import each other."""
from __future__ import annotations

import asyncio

from config import Settings, get_settings
from storage.db import Database, resolve_database_url
from storage.loop_scoped import LoopScoped
from storage.migrate import migrate


async def _close(db: Database) -> None:
    await db.close()


_DATABASES: LoopScoped[Database] = LoopScoped("database", _close)


async def get_database(settings: Settings | None = None) -> Database:
    """The process-wide Database for the running event loop, opened and migrated on first use."""
    db = _DATABASES.get()
    if db is not None:
        return db
    async with _DATABASES.lock():
        db = _DATABASES.get()
        if db is None:
            s = settings or get_settings()
            url = await asyncio.to_thread(resolve_database_url, s)
            db = await Database(url, s).open()
            await migrate(db)
            _DATABASES.put(db)
    return db


async def close_database() -> None:
    """Close the running loop's Database now (the loop's shutdown would otherwise do it)."""
    await _DATABASES.close()
