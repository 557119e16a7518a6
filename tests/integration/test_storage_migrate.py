"""The migrator started by 3 processes at once, each time on a fresh database.

Every version must be applied exactly once (by exactly one process, named in applied_by),
no process may fail, and the lease must be released. A probe migration that is NOT
idempotent (plain CREATE TABLE + INSERT + a sleep that holds the lease) proves the others
waited instead of re-running it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from storage.migrate import MIGRATIONS_DIR, discover
from tests.storage_helpers import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 3

PROBE = """-- test-only: fails if applied twice (no IF NOT EXISTS), holds the lease for a while
CREATE TABLE migration_probe (pid INTEGER NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
INSERT INTO migration_probe (pid) SELECT pg_backend_pid();
SELECT pg_sleep(0.6);
"""


def _run_processes(url: str, directory: Path, tmp: Path) -> list[dict]:
    go = tmp / f"go-{time.monotonic_ns()}"
    env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.storage_helpers", "migrate", url, str(go), str(directory)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        # Wait until all are connected and parked at the barrier, then release them together.
        for p in procs:
            line = p.stdout.readline()
            assert line.strip() == "READY", (line, p.stderr.read() if p.poll() is not None else "")
        go.touch()
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"migrator process failed (rc={p.returncode}):\n{err}"
        assert "Traceback" not in err, err
        line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
        results.append(json.loads(line[len("RESULT "):]))
    return results


def _check(url: str, results: list[dict], expected: list[str]) -> dict[str, int]:
    pids = {r["pid"] for r in results}
    assert len(pids) == PROCESSES
    # Each version applied by exactly one process (no overlap, nothing missing).
    applied = [v for r in results for v in r["applied"]]
    assert sorted(applied) == expected, results
    who = {v: r["pid"] for r in results for v in r["applied"]}
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT version, applied_by FROM schema_migrations ORDER BY version").fetchall()
        lease = conn.execute("SELECT * FROM schema_migration_lease").fetchall()
        tables = {r["t"] for r in conn.execute(
            "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public'").fetchall()}
    assert [r["version"] for r in rows] == expected
    for r in rows:
        # applied_by = host:pid:nonce of the process that ran it, and it is the one that said so.
        assert int(r["applied_by"].split(":")[1]) == who[r["version"]], (r, who)
    assert lease == [], "migration lease not released"
    assert {"posts", "events", "publications", "llm_calls", "documents", "chunks"} <= tables
    return who


@pytest.fixture()
def fresh_db(pg_url):
    name, url = create_database(pg_url, "mig")
    yield url
    drop_database(pg_url, name)


def test_three_processes_real_migrations(fresh_db, tmp_path):
    expected = [m.version for m in discover("postgres")]
    assert len(expected) >= 2 and expected[0].startswith("0001")
    results = _run_processes(fresh_db, MIGRATIONS_DIR, tmp_path)
    who = _check(fresh_db, results, expected)
    # All versions of a fresh database come from the single lease holder that found them pending.
    assert len(set(who.values())) == 1
    print(f"\napplied by pid {set(who.values())}; "
          f"per-process {[len(r['applied']) for r in results]}; "
          f"start spread {max(r['t0'] for r in results) - min(r['t0'] for r in results):.3f}s; "
          f"tx retries {[r['retries'] for r in results]}")


def test_three_processes_with_non_idempotent_probe(fresh_db, tmp_path):
    mig_dir = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, mig_dir)
    real = [m.version for m in discover("postgres")]
    probe = f"{int(real[-1][:4]) + 1:04d}_probe"  # sorts after every real migration
    (mig_dir / f"{probe}.postgres.sql").write_text(PROBE)
    (mig_dir / f"{probe}.cockroachdb.sql").write_text("SELECT 1;\n")  # other dialect: ignored here
    expected = [m.version for m in discover("postgres", mig_dir)]
    assert expected == [*real, probe]

    results = _run_processes(fresh_db, mig_dir, tmp_path)
    who = _check(fresh_db, results, expected)
    with psycopg.connect(fresh_db) as conn:
        probe_rows = conn.execute("SELECT count(*) FROM migration_probe").fetchone()[0]
    assert probe_rows == 1
    # The two that did not hold the lease waited for it (the probe sleeps 0.6 s under it)
    # and then found nothing to do.
    winner = who[probe]
    losers = [r for r in results if r["pid"] != winner]
    assert all(r["applied"] == [] for r in losers)
    win = next(r for r in results if r["pid"] == winner)
    assert all(r["t1"] >= win["t1"] - 0.3 for r in losers), results

    # Three more processes on the migrated database: nothing to do, nothing re-run.
    again = _run_processes(fresh_db, mig_dir, tmp_path)
    assert all(r["applied"] == [] for r in again)
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM migration_probe").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(expected)


# --- the lease itself, in-process ------------------------------------------------------------

async def _open(url: str):
    from config import load_settings
    from storage.db import Database

    return await Database(url, load_settings(database_url=url, pool_max_size=3), name="lease").open()


async def test_lease_duration_and_release(fresh_db):
    from storage.migrate import LEASE_SECONDS, _create_bookkeeping, under_lease

    db = await _open(fresh_db)
    try:
        await _create_bookkeeping(db)
        seen = {}

        async def work(holder):
            row = await db.fetchone(
                "SELECT holder, extract(epoch FROM expires_at - now()) AS ttl FROM schema_migration_lease")
            seen.update(row, me=holder)
            return "ok"

        assert await under_lease(db, work) == "ok"
        assert seen["holder"] == seen["me"]
        assert LEASE_SECONDS - 5 < float(seen["ttl"]) <= LEASE_SECONDS
        assert await db.fetch("SELECT * FROM schema_migration_lease") == []
    finally:
        await db.close()


async def test_live_lease_of_another_process_blocks_then_times_out(fresh_db):
    from storage.migrate import _create_bookkeeping, migrate

    db = await _open(fresh_db)
    try:
        await _create_bookkeeping(db)
        async with db.pool.connection() as conn:
            await conn.execute("INSERT INTO schema_migration_lease VALUES (1, 'other:1:x', now() + interval '1 hour')")
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="waiting for another process's migration lease"):
            await migrate(db, wait_s=1.0)
        assert 1.0 <= time.monotonic() - t0 < 5.0
        assert await db.fetch("SELECT version FROM schema_migrations") == []
    finally:
        await db.close()


async def test_expired_lease_of_a_crashed_process_is_taken_over(fresh_db):
    from storage.migrate import _create_bookkeeping, migrate

    db = await _open(fresh_db)
    try:
        await _create_bookkeeping(db)
        async with db.pool.connection() as conn:
            await conn.execute("INSERT INTO schema_migration_lease VALUES (1, 'crashed:1:x', now() - interval '1 second')")
        applied = await migrate(db, wait_s=5.0)
        assert applied == [m.version for m in discover("postgres")]
        assert await db.fetch("SELECT * FROM schema_migration_lease") == []
    finally:
        await db.close()
