"""Helpers for the storage tests: fresh databases on the embedded server, URL surgery.

Raw SQL is allowed here (tests/): CREATE/DROP DATABASE take identifiers, not parameters.
"""
from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql as pgsql


def url_with_dbname(url: str, dbname: str) -> str:
    """The same server URL pointing at another database (keeps ?host=<socket dir>)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def create_database(admin_url: str, prefix: str = "t") -> tuple[str, str]:
    """CREATE DATABASE with a unique name; returns (name, url)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    return name, url_with_dbname(admin_url, name)


def set_default_isolation(admin_url: str, name: str, level: str) -> None:
    """ALTER DATABASE ... SET default_transaction_isolation (new sessions pick it up)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("ALTER DATABASE {} SET default_transaction_isolation = {}").format(
            pgsql.Identifier(name), pgsql.Literal(level)))


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


# --- a migrator process (run as `python -m tests.storage_helpers migrate URL GO_FILE DIR`) ------

async def _migrate_worker(url: str, go_file: str, directory: str) -> dict:
    import asyncio
    import os
    import time
    from pathlib import Path

    from config import load_settings
    from storage.db import Database
    from storage.migrate import migrate

    settings = load_settings(database_url=url, pool_min_size=1, pool_max_size=3)
    db = await Database(url, settings, name=f"migrator-{os.getpid()}").open()
    try:
        print("READY", flush=True)
        # Start barrier: every process is imported, connected and waiting before any migrates.
        while not Path(go_file).exists():
            await asyncio.sleep(0.005)
        t0 = time.time()
        applied = await migrate(db, directory=Path(directory))
        return {"pid": os.getpid(), "applied": applied, "t0": t0, "t1": time.time(),
                "retries": db.stats.retries}
    finally:
        await db.close()


def _main(argv: list[str]) -> int:
    import asyncio
    import json

    if len(argv) == 4 and argv[0] == "migrate":
        result = asyncio.run(_migrate_worker(*argv[1:]))
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    print("usage: python -m tests.storage_helpers migrate URL GO_FILE DIR")
    return 2


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
