"""storage.bench.enable_statement_stats_embedded keeps the libraries a server already preloads.

It used to set shared_preload_libraries to ONE quoted string of comma-joined names ('a,b'), which
names a library the server cannot find: the restart that follows failed whenever the list was
not empty. Runs on a private embedded server (its own data dir: it is restarted)."""
from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from storage.bench import enable_statement_stats_embedded, preload_libraries_with, set_preload_libraries
from storage.embedded import restart_embedded, start_embedded, stop_embedded


def test_preload_list_parsing():
    assert preload_libraries_with("", "pg_stat_statements") == ["pg_stat_statements"]
    assert preload_libraries_with("pg_prewarm", "pg_stat_statements") == ["pg_prewarm", "pg_stat_statements"]
    assert preload_libraries_with('pg_prewarm, "auto_explain"', "x") == ["pg_prewarm", "auto_explain", "x"]
    assert preload_libraries_with("pg_prewarm, pg_stat_statements", "pg_stat_statements") is None
    # A name that merely contains it is another library.
    assert preload_libraries_with("my_pg_stat_statements_fork", "pg_stat_statements") == [
        "my_pg_stat_statements_fork", "pg_stat_statements"]


@pytest.fixture
def private_pg(session_dir):
    data_dir = (session_dir / "state" / "pg-bench-stats").resolve()
    url = start_embedded(data_dir, keep_running=True)
    yield data_dir, url
    stop_embedded(data_dir)


def test_enable_keeps_a_preloaded_library_and_the_server_starts(private_pg):
    data_dir, url = private_pg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(set_preload_libraries(["pg_prewarm"]))
    restart_embedded(data_dir)

    enable_statement_stats_embedded(data_dir)  # restarts the server: it must come up

    with psycopg.connect(url, autocommit=True) as conn:
        libs = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        assert [x.strip() for x in libs.split(",")] == ["pg_prewarm", "pg_stat_statements"]
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute(sql.SQL("SELECT 1"))
        assert conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0] >= 1
    enable_statement_stats_embedded(data_dir)  # already loaded: nothing to change, no restart
