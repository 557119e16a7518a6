"""Database helpers for the benchmarks in evals/bench: scratch databases and vector index builds.

A benchmark runs in its own database on the configured server (the embedded PostgreSQL by
default, or DATABASE_URL), created and dropped here, so it never touches the real corpus.
"""
from __future__ import annotations

import time

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from config import Settings, get_settings
from storage import corpus_sql
from storage.db import Database, resolve_database_url


def _with_dbname(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


async def scratch_database(name: str, settings: Settings | None = None) -> Database:
    """A fresh, migrated database `name` on the configured server (an old one is dropped)."""
    from storage.migrate import migrate

    s = settings or get_settings()
    base = resolve_database_url(s)
    async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db = await Database(_with_dbname(base, name), s, name=name).open()
    await migrate(db)
    return db


async def drop_scratch_database(db: Database, settings: Settings | None = None) -> None:
    name = conninfo_to_dict(db.url)["dbname"]
    await db.close()
    base = resolve_database_url(settings or get_settings())
    async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
        stmt = "DROP DATABASE IF EXISTS {} WITH (FORCE)" if db.dialect == "postgres" else "DROP DATABASE IF EXISTS {} CASCADE"
        await conn.execute(sql.SQL(stmt).format(sql.Identifier(name)))


async def drop_vector_index(db: Database, dim: int) -> None:
    async with db.pool.connection() as conn:
        if db.dialect == "postgres":
            await conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(
                sql.Identifier(corpus_sql.hnsw_index_name(dim))))
        else:
            await conn.execute("DROP INDEX IF EXISTS chunks@chunks_embedding_idx")


async def build_vector_index(db: Database, dim: int, *, maintenance_work_mem: str = "1GB",
                             parallel_workers: int = 1) -> float:
    """(Re)build the vector index for `dim`; returns seconds."""
    async with db.pool.connection() as conn:
        t = time.perf_counter()
        if db.dialect == "postgres":
            await conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(maintenance_work_mem)))
            await conn.execute(sql.SQL("SET max_parallel_maintenance_workers = {}").format(
                sql.Literal(parallel_workers)))
            await conn.execute(corpus_sql.create_hnsw_index(dim))
            await conn.execute("RESET maintenance_work_mem")
            await conn.execute("RESET max_parallel_maintenance_workers")
        else:
            await conn.execute("CREATE VECTOR INDEX IF NOT EXISTS chunks_embedding_idx "
                               "ON chunks (embedding vector_cosine_ops)")
        return time.perf_counter() - t


async def analyze(db: Database) -> None:
    async with db.pool.connection() as conn:
        await conn.execute("ANALYZE documents")
        await conn.execute("ANALYZE chunks")


async def relation_sizes(db: Database) -> dict[str, int]:
    """Bytes of the chunks table and of each of its indexes (PostgreSQL only)."""
    if db.dialect != "postgres":
        return {}
    rows = await db.fetch(
        "SELECT c.relname AS name, pg_total_relation_size(c.oid) AS bytes FROM pg_class c "
        "WHERE c.relname = 'chunks' OR c.oid IN (SELECT indexrelid FROM pg_index i JOIN pg_class t "
        "ON t.oid = i.indrelid WHERE t.relname = 'chunks')")
    return {r["name"]: int(r["bytes"]) for r in rows}


async def prewarm(db: Database, dim: int) -> bool:
    """Load the chunks table and its HNSW index into shared buffers (pg_prewarm), if available.
    Steady state for a search service; without it the first queries read pages from the OS."""
    if db.dialect != "postgres":
        return False
    try:
        async with db.pool.connection() as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            await conn.execute("SELECT pg_prewarm('chunks'), pg_prewarm(%(i)s)",
                               {"i": corpus_sql.hnsw_index_name(dim)})
        return True
    except psycopg.Error:
        return False


async def server_settings(db: Database) -> dict[str, str]:
    if db.dialect != "postgres":
        return {}
    rows = await db.fetch("SELECT name, setting, unit FROM pg_settings WHERE name IN "
                          "('shared_buffers', 'maintenance_work_mem', 'max_parallel_maintenance_workers')")
    out = {}
    for r in rows:
        if r["name"] == "shared_buffers":  # in 8 kB pages
            out[r["name"]] = f"{int(r['setting']) * 8 // 1024}MB"
        else:
            out[r["name"]] = f"{r['setting']}{r['unit'] or ''}"
    return out


# --- statement statistics (pg_stat_statements) -------------------------------------------------

def preload_libraries_with(current: str, library: str) -> list[str] | None:
    """The shared_preload_libraries list with `library` added, from the server's SHOW value
    (comma-separated names, each possibly double-quoted); None when it is already there."""
    names = [name.strip().strip('"') for name in current.split(",")]
    names = [name for name in names if name]
    return None if library in names else [*names, library]


def set_preload_libraries(names: list[str]) -> sql.Composed:
    """ALTER SYSTEM for a list GUC: one literal per library. One quoted string of comma-joined
    names would name a single library 'a,b' that the server cannot load at its next start."""
    return sql.SQL("ALTER SYSTEM SET shared_preload_libraries = {}").format(
        sql.SQL(", ").join(sql.Literal(name) for name in names))


def enable_statement_stats_embedded(data_dir) -> None:
    """Load pg_stat_statements into an embedded PostgreSQL (a restart: only for a private bench
    server), keeping any library already preloaded."""
    from pathlib import Path

    from storage.embedded import restart_embedded, start_embedded

    uri = start_embedded(Path(data_dir), keep_running=True)
    with psycopg.connect(uri, autocommit=True) as conn:
        libs = preload_libraries_with(conn.execute("SHOW shared_preload_libraries").fetchone()[0],
                                      "pg_stat_statements")
        if libs is not None:
            conn.execute(set_preload_libraries(libs))
            conn.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
            conn.execute("ALTER SYSTEM SET pg_stat_statements.track_planning = on")  # planner time apart
    if libs is not None:
        restart_embedded(Path(data_dir))
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def reset_statement_stats(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def statement_stats(url: str, *, like: str | None = None) -> list[dict]:
    """pg_stat_statements rows of the database in `url` (calls, total/mean time in ms, query)."""
    from psycopg.rows import dict_row

    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT s.calls, s.total_exec_time AS total_ms, s.mean_exec_time AS mean_ms, s.rows, s.query "
            "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = current_database() AND (%(like)s::text IS NULL OR s.query ILIKE %(like)s) "
            "ORDER BY s.calls DESC", {"like": like}).fetchall()


class ServerTime:
    """Planning + execution time PostgreSQL spent on one database's statements, from
    pg_stat_statements (loaded: enable_statement_stats_embedded), read as a running total so a
    caller can take the difference around one operation. Its own reads are left out."""

    TOTALS = ("SELECT coalesce(sum(total_plan_time), 0) AS plan_ms, coalesce(sum(total_exec_time), 0) AS exec_ms "
              "FROM pg_stat_statements(false) WHERE dbid = (SELECT oid FROM pg_database WHERE datname = "
              "current_database()) AND NOT queryid = ANY(%(own)s)")

    def __init__(self, url: str):
        from psycopg.rows import dict_row

        self.conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        self.own: list[int] = []
        try:
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")  # per database
            self.conn.execute("SELECT pg_stat_statements_reset()")
            for _ in range(2):
                self.totals()
            self.own = [r["queryid"] for r in self.conn.execute(
                "SELECT queryid FROM pg_stat_statements(false) WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())").fetchall()]
        except psycopg.Error:
            self.conn.close()
            raise

    def totals(self) -> tuple[float, float]:
        """(planning ms, execution ms) so far."""
        r = self.conn.execute(self.TOTALS, {"own": self.own}).fetchone()
        return float(r["plan_ms"]), float(r["exec_ms"])

    def close(self) -> None:
        self.conn.close()
