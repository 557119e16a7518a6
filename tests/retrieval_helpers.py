"""Fixtures for the retrieval tests: the real embedder (loaded once per session) and private
databases on the session's embedded PostgreSQL, so corpus rows never leak into other tests
(the engine's researcher desk retrieves whenever the session database has chunks)."""
from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "evals" / "corpus"


@pytest.fixture(scope="session")
async def embedder():
    from tools.embeddings import get_embedder

    emb = get_embedder()
    await asyncio.to_thread(emb.load)
    return emb


async def create_private_db(pg_url: str):
    from config import get_settings
    from storage.db import Database
    from storage.migrate import migrate

    name = f"retrieval_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.replace("/postgres?", f"/{name}?", 1)
    assert name in url, url
    db = await Database(url, get_settings(), name=name).open()
    await migrate(db)
    db._test_name = name  # type: ignore[attr-defined]
    return db


async def drop_private_db(pg_url: str, db) -> None:
    await db.close()
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db._test_name}" WITH (FORCE)')


@pytest.fixture
async def private_db(pg_url):
    db = await create_private_db(pg_url)
    yield db
    await drop_private_db(pg_url, db)


@pytest.fixture(scope="module")
async def module_db(pg_url):
    db = await create_private_db(pg_url)
    yield db
    await drop_private_db(pg_url, db)


def write_notes(folder: Path, notes: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in notes.items():
        p = folder / name
        p.write_text(text)
        out.append(p)
    return out


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)
