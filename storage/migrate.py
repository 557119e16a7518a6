"""A small migrator: versioned SQL files in storage/migrations, recorded in schema_migrations.

Safe when several processes start at once without advisory locks (CockroachDB has none):
a lease row elects one migrating process; the others wait for it and then find nothing to do.
File names: NNNN_name.sql (both dialects) or NNNN_name.<postgres|cockroachdb>.sql.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from storage import sql
from storage.db import Database, parse_server_version

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LEASE_SECONDS = 120
# The CockroachDB migrations create a C-SPANN vector index with vector_cosine_ops: operator
# classes other than vector_l2_ops exist from v25.3 (v25.2 accelerates only L2 distance).
MIN_COCKROACHDB = (25, 3)


class UnsupportedServer(RuntimeError):
    """The database server is too old for our migrations."""


def check_server_supported(dialect: str, server_version: str) -> None:
    """Refuse, with a clear message, a server our migrations cannot run on."""
    if dialect != "cockroachdb":
        return
    v = parse_server_version(server_version)
    if v is not None and v[:2] < MIN_COCKROACHDB:
        raise UnsupportedServer(
            f"CockroachDB v{v[0]}.{v[1]}.{v[2]} is too old: newsroom needs >= "
            f"v{MIN_COCKROACHDB[0]}.{MIN_COCKROACHDB[1]} (vector index with vector_cosine_ops; "
            "v25.2 supports only vector_l2_ops). See deploy/cockroach/README.md."
        )


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    text: str

    @property
    def statements(self) -> list[str]:
        # Our files hold no semicolons inside literals, so a split on ';' is exact.
        text = "\n".join(line for line in self.text.splitlines() if not line.strip().startswith("--"))
        return [s.strip() for s in text.split(";") if s.strip()]


def discover(dialect: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        parts = path.name[: -len(".sql")].split(".")
        version = parts[0]
        if len(parts) == 2 and parts[1] != dialect:
            continue
        if len(parts) > 2:
            raise ValueError(f"bad migration file name: {path.name}")
        if version in found:
            raise ValueError(f"two migrations for version {version} and dialect {dialect}")
        found[version] = Migration(version, path, path.read_text())
    return [found[v] for v in sorted(found)]


async def _create_bookkeeping(db: Database) -> None:
    for _ in range(20):
        try:
            async with db.pool.connection() as conn:
                await conn.execute(sql.CREATE_MIGRATION_TABLES)
            return
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable, psycopg.errors.DuplicateObject):
            # Two processes raced on CREATE TABLE IF NOT EXISTS (PostgreSQL's catalog race).
            await asyncio.sleep(0.05)
        except psycopg.errors.SerializationFailure:
            await asyncio.sleep(0.05)
    raise RuntimeError("could not create the schema_migrations table")


async def applied_versions(db: Database) -> set[str]:
    rows = await db.fetch(sql.SELECT_APPLIED_MIGRATIONS)
    return {r["version"] for r in rows}


async def under_lease(db: Database, work, *, wait_s: float = 300.0):
    """Run await work() while holding the migration lease (one process at a time)."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait_s

    async def _acquire(conn):
        cur = await conn.execute(sql.ACQUIRE_MIGRATION_LEASE, {"holder": holder, "seconds": LEASE_SECONDS})
        return await cur.fetchone()

    async def _release(conn):
        await conn.execute(sql.RELEASE_MIGRATION_LEASE, {"holder": holder})

    while not await db.transaction(_acquire):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {wait_s:.0f}s waiting for another process's migration lease")
        await asyncio.sleep(0.2)
    try:
        return await work(holder)
    finally:
        await db.transaction(_release)


async def migrate(db: Database, *, directory: Path = MIGRATIONS_DIR, wait_s: float = 300.0) -> list[str]:
    """Apply pending migrations; returns the versions this process applied."""
    check_server_supported(db.dialect, db.server_version)
    await _create_bookkeeping(db)
    # File reads off the event loop (the Agent Server flags blocking calls).
    wanted = await asyncio.to_thread(discover, db.dialect, directory)
    if not [m for m in wanted if m.version not in await applied_versions(db)]:
        return []

    async def _apply_pending(holder: str) -> list[str]:
        applied_here: list[str] = []
        done = await applied_versions(db)  # re-read: another process may have applied them
        for m in wanted:
            if m.version in done:
                continue
            log.info("applying migration %s (%s)", m.version, db.dialect)
            await _apply(db, m, holder)
            applied_here.append(m.version)
        return applied_here

    return await under_lease(db, _apply_pending, wait_s=wait_s)


async def _apply(db: Database, m: Migration, holder: str) -> None:
    if db.dialect == "postgres":
        # PostgreSQL has transactional DDL: the schema change and its record commit together.
        async def _run(conn):
            for stmt in m.statements:
                await conn.execute(stmt)
            await conn.execute(sql.INSERT_MIGRATION, {"version": m.version, "holder": holder})

        await db.transaction(_run)
        return
    # CockroachDB commits DDL on its own (autocommit_before_ddl); statements are idempotent
    # (IF NOT EXISTS) and the lease keeps other processes out, so run them one by one.
    async with db.pool.connection() as conn:
        for stmt in m.statements:
            await conn.execute(stmt)

    async def _record(conn):
        await conn.execute(sql.INSERT_MIGRATION, {"version": m.version, "holder": holder})

    await db.transaction(_record)
