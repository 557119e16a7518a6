"""Database.pipelined (statements in one READ ONLY transaction, one round trip) and the binary
query-vector parameter, on the real embedded PostgreSQL."""
from __future__ import annotations

import logging

import numpy as np
import psycopg
import pytest

from config import load_settings
from storage.db import Database


@pytest.fixture
async def one_conn_db(pg_url, db):
    """One pooled connection, so every call below runs on the same session."""
    s = load_settings(database_url=pg_url, pool_min_size=1, pool_max_size=1, tx_max_attempts=3)
    database = await Database(pg_url, s, name="pipelined").open()
    yield database
    await database.close()


async def test_settings_are_local_to_the_pipelined_transaction(one_conn_db):
    rows = await one_conn_db.pipelined([
        ("SELECT set_config('statement_timeout', '4321', true) AS s", None),
        ("SELECT current_setting('statement_timeout') AS v, current_setting('transaction_read_only') AS ro, "
         "current_setting('transaction_isolation') AS iso", None),
    ])
    assert rows == [{"v": "4321ms", "ro": "on", "iso": "serializable"}]
    after = await one_conn_db.fetchone("SELECT current_setting('statement_timeout') AS v")
    assert after == {"v": "0"}, "the setting ended with the transaction"


async def test_a_failing_statement_raises_and_leaves_the_connection_clean(one_conn_db, caplog):
    caplog.set_level(logging.WARNING)
    with pytest.raises(psycopg.errors.DivisionByZero):  # not retryable: raised at once
        await one_conn_db.pipelined([("SELECT 1 AS a", None), ("SELECT 1 / 0 AS b", None)])
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        await one_conn_db.pipelined([("CREATE TEMP TABLE pipelined_ro (x int)", None)])
    assert await one_conn_db.pipelined([("SELECT 2 AS a", {})]) == [{"a": 2}]
    assert await one_conn_db.fetchone("SELECT 3 AS a") == {"a": 3}
    assert not [r for r in caplog.records if "rolling back" in r.getMessage()], "the pool had to clean up"
    with pytest.raises(ValueError):
        await one_conn_db.pipelined([])


async def test_numpy_vectors_go_binary_and_exact(one_conn_db):
    vec = np.array([0.1, -2.5, 1e-7, 3.4028235e38], dtype=np.float32)
    row = await one_conn_db.fetchone("SELECT %(q)s::vector(4)::text AS t, vector_dims(%(q)s::vector) AS n",
                                     {"q": vec})
    assert row["n"] == 4
    assert np.array_equal(np.array(row["t"].strip("[]").split(","), dtype=np.float32), vec)
    with pytest.raises(psycopg.errors.DataException):  # the cast still checks the dimension
        await one_conn_db.fetchone("SELECT %(q)s::vector(3) AS v", {"q": vec})
