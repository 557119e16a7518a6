"""The retrieval corpus: documents and their embedded chunks, on PostgreSQL or CockroachDB.

- A document is identified by its source path and versioned by a content hash. Writing a
  document whose stored hash is the same writes nothing; a changed one replaces all its chunks
  in one transaction (so a reader sees the old chunks or the new ones, never a mix).
- Chunks go in with COPY (binary, PostgreSQL) or multi-row INSERTs (CockroachDB).
- Every vector is stored with its model name and dimension; searching with another model or
  dimension than the corpus was built with raises EmbeddingMismatchError with what to do.
"""
from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from storage import corpus_sql as q
from storage.db import Database

log = logging.getLogger(__name__)
INSERT_BATCH = 200  # rows per multi-row INSERT (CockroachDB)


class EmbeddingMismatchError(RuntimeError):
    """The stored vectors were made by another embedding model or have another dimension."""


@dataclass
class ChunkIn:
    ordinal: int
    heading_path: str
    content: str
    content_hash: str
    embedding: np.ndarray | None = None  # filled by the caller (or reused from the stored copy)


@dataclass
class DocumentIn:
    source_path: str
    title: str
    content_hash: str
    chunks: list[ChunkIn]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class CorpusModel:
    embed_model: str
    dim: int
    chunks: int
    documents: int


def parse_vector_text(text: str) -> np.ndarray:
    return np.array(json.loads(text), dtype=np.float32)


def vector_literal(vec: Sequence[float] | np.ndarray) -> str:
    """pgvector's text form '[x,y,...]' (accepted by PostgreSQL and CockroachDB)."""
    arr = np.asarray(vec, dtype=np.float32).ravel()
    # 9 significant digits give every float32 back exactly; repr of each value as a double was
    # 2.4x slower to build and 60% longer on the wire (a 384-d query: 78 vs 183 us, 4.9 vs 7.8 KB).
    return "[" + ",".join([f"{x:.9g}" for x in arr.tolist()]) + "]"


_TERM = re.compile(r"[A-Za-z0-9]+(?:[-.][A-Za-z0-9]+)*")


def tsquery_terms(query: str) -> str:
    """An OR of the query's words in to_tsquery syntax (stop words are dropped by the server).

    OR, not AND: a natural-language question rarely has all its words in one chunk; ts_rank
    still ranks chunks matching more (and rarer) terms first.
    """
    seen: list[str] = []
    for t in _TERM.findall(query.lower()):
        for part in re.split(r"[-.]", t):
            if len(part) >= 2 and part not in seen:
                seen.append(part)
    return " | ".join(seen)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching every string that starts with prefix."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class CorpusStore:
    """Data access for the corpus on one Database."""

    def __init__(self, db: Database):
        self.db = db
        self._vector_oid = None  # psycopg TypeInfo of `vector`, fetched once
        self._indexed_dims: set[int] = set()

    # --- reads ------------------------------------------------------------------------------------

    async def count_chunks(self, *, outside_prefix: str | None = None) -> int:
        if outside_prefix is None:
            row = await self.db.fetchone(q.COUNT_CHUNKS)
        else:
            row = await self.db.fetchone(q.COUNT_CHUNKS_OUTSIDE, {"prefix": _like_prefix(outside_prefix)})
        return int(row["n"]) if row else 0

    async def has_chunks(self, *, outside_prefix: str) -> bool:
        """Whether any chunk's source path does not start with outside_prefix (no count)."""
        row = await self.db.fetchone(q.ANY_CHUNK_OUTSIDE, {"prefix": _like_prefix(outside_prefix)})
        return bool(row and row["found"])

    async def count_documents(self) -> int:
        row = await self.db.fetchone(q.COUNT_DOCUMENTS)
        return int(row["n"]) if row else 0

    async def list_documents(self) -> list[dict]:
        return await self.db.fetch(q.LIST_DOCUMENTS)

    async def source_paths(self) -> list[str]:
        return [r["source_path"] for r in await self.db.fetch(q.SELECT_SOURCE_PATHS)]

    async def document_hashes(self, paths: Sequence[str]) -> dict[str, str]:
        if not paths:
            return {}
        rows = await self.db.fetch(q.SELECT_DOCUMENT_HASHES, {"paths": list(paths)})
        return {r["source_path"]: r["content_hash"] for r in rows}

    async def models(self) -> list[CorpusModel]:
        rows = await self.db.fetch(q.CORPUS_MODELS)
        return [CorpusModel(r["embed_model"], int(r["dim"]), int(r["chunks"]), int(r["documents"])) for r in rows]

    async def check_compatible(self, embed_model: str, dim: int, *, purpose: str = "search") -> None:
        """Raise EmbeddingMismatchError if the corpus holds vectors of another model/dimension."""
        others = [m for m in await self.models() if (m.embed_model, m.dim) != (embed_model, dim)]
        if not others:
            return
        stored = ", ".join(f"{m.embed_model} ({m.dim}-d, {m.chunks} chunks in {m.documents} documents)"
                           for m in others)
        if purpose == "search":
            advice = ("re-ingest the corpus with the configured model (`newsroom ingest --reembed PATH...`) "
                      "or set NEWSROOM_EMBED_MODEL back to the model it was built with")
        else:
            advice = ("pass --reembed to re-embed every document with the new model (stored documents whose "
                      "files are gone are removed), or set NEWSROOM_EMBED_MODEL back")
        raise EmbeddingMismatchError(
            f"embedding mismatch: the corpus holds vectors from {stored}; the configured embedder is "
            f"{embed_model} ({dim}-d). Vectors of different models or dimensions cannot be compared: {advice}."
        )

    async def documents_with_other_vectors(self, embed_model: str, dim: int) -> list[str]:
        rows = await self.db.fetch(q.DOCUMENTS_WITH_OTHER_VECTORS, {"embed_model": embed_model, "dim": dim})
        return [r["source_path"] for r in rows]

    async def chunks_by_id(self, ids: Sequence[str]) -> list[dict]:
        if not ids:
            return []
        return await self.db.fetch(q.SELECT_CHUNKS_BY_ID, {"ids": list(ids)})

    async def stored_vectors(self, conn, document_id: str, embed_model: str, dim: int) -> dict[str, np.ndarray]:
        cur = await conn.execute(q.SELECT_CHUNK_VECTORS_OF_DOCUMENT,
                                 {"document_id": document_id, "embed_model": embed_model, "dim": dim})
        return {r["content_hash"]: parse_vector_text(r["embedding"]) for r in await cur.fetchall()}

    async def reusable_vectors(self, source_path: str, embed_model: str, dim: int) -> dict[str, np.ndarray]:
        """content_hash -> vector of the document's stored chunks (to skip re-embedding them)."""

        async def _read(conn):
            row = await (await conn.execute(
                "SELECT id::text AS id FROM documents WHERE source_path = %(p)s", {"p": source_path})).fetchone()
            if row is None:
                return {}
            return await self.stored_vectors(conn, row["id"], embed_model, dim)

        return await self.db.transaction(_read)

    # --- writes -------------------------------------------------------------------------------------

    async def ensure_vector_index(self, dim: int) -> None:
        """PostgreSQL: the partial HNSW index for this dimension (384 comes with the migration).
        CockroachDB: the column is VECTOR(384) with its vector index; other dimensions need a migration."""
        if dim in self._indexed_dims:
            return
        if self.db.dialect == "cockroachdb":
            if dim != 384:
                raise EmbeddingMismatchError(
                    f"the CockroachDB schema stores VECTOR(384); a {dim}-d embedder needs a migration that "
                    f"changes chunks.embedding to VECTOR({dim}) and rebuilds chunks_embedding_idx")
        else:
            async with self.db.pool.connection() as conn:
                await conn.execute(q.create_hnsw_index(dim))
        self._indexed_dims.add(dim)

    async def _vector_info(self, conn):
        if self._vector_oid is None:
            from psycopg.types import TypeInfo

            info = await TypeInfo.fetch(conn, "vector")
            if info is None:
                raise RuntimeError("the vector type is missing: is pgvector installed (CREATE EXTENSION vector)?")
            self._vector_oid = info
        return self._vector_oid

    async def upsert_document(self, doc: DocumentIn, *, embed_model: str, dim: int) -> str:
        """Write one document and its chunks. Returns 'unchanged', 'inserted' or 'replaced'."""
        return (await self.upsert_documents([doc], embed_model=embed_model, dim=dim))[0]

    async def upsert_documents(self, docs: Sequence[DocumentIn], *, embed_model: str, dim: int) -> list[str]:
        """Write documents and their chunks in ONE transaction ('unchanged' | 'inserted' | 'replaced'
        each). A document whose stored hash is the same writes nothing; a changed one has all its
        chunks replaced. Round trips do not grow with the batch: the document upserts are
        pipelined, the old chunks go in one DELETE and the new ones in one COPY."""
        if not docs:
            return []
        if len({d.source_path for d in docs}) != len(docs):
            raise ValueError("a batch may hold each source path once")
        for doc in docs:
            for c in doc.chunks:
                if c.embedding is None or np.asarray(c.embedding).shape != (dim,):
                    got = None if c.embedding is None else np.asarray(c.embedding).shape
                    raise EmbeddingMismatchError(
                        f"{doc.source_path} chunk {c.ordinal}: vector shape {got}, expected ({dim},)")

        async def _write(conn) -> list[str]:
            if self.db.dialect == "postgres":
                await conn.execute(q.WRITE_ISOLATION)
            proposed = [uuid.uuid4() for _ in docs]
            params = [{"id": pid, "source_path": d.source_path, "title": d.title, "content_hash": d.content_hash,
                       "metadata": json.dumps(d.metadata, default=str)} for pid, d in zip(proposed, docs)]
            returned: list[dict | None] = []
            if self.db.dialect == "postgres":
                cur = conn.cursor()  # executemany pipelines the statements: one round trip
                await cur.executemany(q.UPSERT_DOCUMENT_IF_CHANGED, params, returning=True)
                while True:
                    returned.append(await cur.fetchone())
                    if not cur.nextset():
                        break
            else:  # no pipeline mode on CockroachDB (INTEGRATION-NOTES): one statement at a time
                for p in params:
                    returned.append(await (await conn.execute(q.UPSERT_DOCUMENT_IF_CHANGED, p)).fetchone())
            if len(returned) != len(docs):  # pragma: no cover - a driver contract violation
                raise RuntimeError(f"expected {len(docs)} upsert results, got {len(returned)}")
            statuses: list[str] = []
            ids: list[str | None] = []
            for pid, row in zip(proposed, returned):
                if row is None:
                    statuses.append("unchanged")
                    ids.append(None)
                else:
                    statuses.append("inserted" if row["id"] == str(pid) else "replaced")
                    ids.append(row["id"])
            replaced = [i for i, st in zip(ids, statuses) if st == "replaced"]
            if replaced:
                await conn.execute(q.DELETE_CHUNKS_OF_DOCUMENTS, {"ids": replaced})
            rows = [(i, c) for i, d, st in zip(ids, docs, statuses) if st != "unchanged" for c in d.chunks]
            await self._insert_chunks(conn, rows, embed_model, dim)
            return statuses

        return await self.db.transaction(_write)

    async def _insert_chunks(self, conn, rows: Sequence[tuple[str, ChunkIn]], embed_model: str, dim: int) -> None:
        if not rows:
            return
        if self.db.dialect == "postgres":
            from pgvector.psycopg.vector import register_vector_info

            info = await self._vector_info(conn)
            register_vector_info(conn, info)  # binary dumper for numpy arrays, this connection
            async with conn.cursor().copy(q.COPY_CHUNKS) as copy:
                copy.set_types(q.CHUNK_COPY_TYPES + [info.oid])
                for doc_id, c in rows:
                    await copy.write_row((uuid.UUID(doc_id), c.ordinal, c.heading_path, c.content, c.content_hash,
                                          embed_model, dim, np.asarray(c.embedding, dtype=np.float32)))
            return
        for start in range(0, len(rows), INSERT_BATCH):
            batch = rows[start:start + INSERT_BATCH]
            params: list[Any] = []
            for doc_id, c in batch:
                params += [doc_id, c.ordinal, c.heading_path, c.content, c.content_hash, embed_model, dim,
                           vector_literal(c.embedding)]
            await conn.execute(q.insert_chunks(len(batch)), params)

    async def delete_document(self, source_path: str) -> bool:
        async def _del(conn):
            cur = await conn.execute(q.DELETE_DOCUMENT, {"source_path": source_path})
            return cur.rowcount > 0

        return await self.db.transaction(_del)

    # --- search -------------------------------------------------------------------------------------

    async def vector_search(self, vec: np.ndarray | Sequence[float], *, embed_model: str, dim: int, limit: int,
                            filters: dict | None = None, ef_search: int = 100) -> list[dict]:
        """Top-`limit` chunks by cosine similarity (score = 1 - cosine distance), filters in SQL."""
        arr = np.asarray(vec, dtype=np.float32).ravel()
        if arr.shape != (dim,):
            raise EmbeddingMismatchError(f"query vector has {arr.shape[0]} dimensions, the embedder says {dim}")
        query, params = q.vector_search(self.db.dialect, dim, filters, limit=int(limit))
        params.update({"q": self._query_vector(arr), "model": embed_model})
        if self.db.dialect == "postgres":
            # The transaction-local search settings and the query in one round trip: three
            # (BEGIN, settings + query, COMMIT) were ~0.5 ms of a ~3 ms search at 100k.
            return await self.db.pipelined([(q.PG_SEARCH_SETTINGS, self._settings_params(ef_search, limit)),
                                            (query, params)])
        return await self.db.fetch(query, params)

    def _query_vector(self, arr) -> np.ndarray | str:
        """The query vector as a parameter: binary on PostgreSQL (storage.db.UntypedVectorDumper),
        pgvector's text form on CockroachDB."""
        arr = np.asarray(arr, dtype=np.float32).ravel()
        return arr if self.db.dialect == "postgres" else vector_literal(arr)

    @staticmethod
    def _settings_params(ef_search: int, limit: int) -> dict:
        return {"ef_search": str(max(ef_search, limit))}

    async def _search_settings(self, conn, ef_search: int, limit: int) -> None:
        if self.db.dialect == "postgres":
            await conn.execute(q.PG_SEARCH_SETTINGS, self._settings_params(ef_search, limit))

    async def text_search(self, query_text: str, *, embed_model: str, dim: int, limit: int,
                          filters: dict | None = None, cosine_to: np.ndarray | None = None) -> list[dict]:
        """Full-text hits; with `cosine_to` (a query vector) each row has its `cosine` to it too."""
        terms = tsquery_terms(query_text)
        if not terms:
            return []
        query, params = q.text_search(self.db.dialect, filters, cosine_dim=dim if cosine_to is not None else None)
        params.update({"tsq": terms, "model": embed_model, "dim": dim, "limit": int(limit)})
        if cosine_to is not None:
            params["q"] = self._query_vector(cosine_to)
        return await self.db.fetch(query, params)

    async def note_mean_cosines(self, vec, document_ids: Sequence[str], *, embed_model: str, dim: int) -> dict[str, float]:
        """document id -> mean cosine of all its chunks to `vec` (for the listed documents only)."""
        if not document_ids:
            return {}
        rows = await self.db.fetch(q.note_mean_cosine(self.db.dialect, dim),
                                   {"q": self._query_vector(vec), "ids": list(document_ids), "model": embed_model})
        return {r["document_id"]: float(r["mean_cosine"]) for r in rows}

    async def explain_vector_search(self, vec, *, embed_model: str, dim: int, limit: int,
                                    filters: dict | None = None, ef_search: int = 100) -> str:
        """EXPLAIN of the vector search as it would run (for tests and `eval-retrieval --explain`)."""
        query, params = q.vector_search(self.db.dialect, dim, filters, limit=int(limit))
        params.update({"q": self._query_vector(vec), "model": embed_model})

        async def _explain(conn):
            await self._search_settings(conn, ef_search, limit)
            cur = await conn.execute("EXPLAIN " + query, params)
            return "\n".join(next(iter(r.values())) for r in await cur.fetchall())

        return await self.db.transaction(_explain)

    async def exact_search_ids(self, vec, *, embed_model: str, dim: int, limit: int) -> list[str]:
        """Ground truth for recall: an exact scan (no index)."""
        params = {"q": self._query_vector(vec), "model": embed_model, "limit": int(limit)}
        rows = await self.db.fetch(q.exact_vector_search(self.db.dialect, dim), params)
        return [r["chunk_id"] for r in rows]
