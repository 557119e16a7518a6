"""Retrieval over the ingested corpus: the seam the Researcher desk calls.

    chunks = await retrieve("How does GQA shrink the KV cache?", k=5, thread_id=tid)

- Dense search: cosine top-k on pgvector (HNSW on PostgreSQL, the vector index on CockroachDB),
  metadata filters compiled into the SQL (storage/corpus_sql.py), never applied after the LIMIT.
- HyDE (on by default, NEWSROOM_RETRIEVAL_HYDE): the LLM (gateway role "hyde") writes a short
  hypothetical answer; the search vector is the normalised sum of the query's and the
  hypothesis's embeddings (the hypothesis brings document vocabulary, the query keeps the search
  anchored when a small model's hypothesis drifts). One LLM call per query; if it fails, the
  query alone is used and a warning is logged.
- Hybrid (NEWSROOM_RETRIEVAL_HYBRID): full-text search over the same chunks, fused with the dense
  ranking by reciprocal rank (RRF, k=60).
- Dedup per source: at most one chunk (the best) per document.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel

from config import Settings, get_settings
from storage.corpus import CorpusStore, EmbeddingMismatchError
from storage.db import Database, get_database
from tools.embeddings import Embedder, get_embedder

log = logging.getLogger(__name__)

__all__ = ["RetrievedChunk", "Retriever", "EmbeddingMismatchError", "corpus_size", "retrieve",
           "set_hyde_generator", "get_retriever", "hyde_messages"]

HydeGenerator = Callable[[str, "str | None"], Awaitable[str]]  # (query, thread_id) -> passage

HYDE_SYSTEM = (
    "You write the passage of a technical note on LLM infrastructure that answers the question. "
    "Write 3 to 5 plain sentences using the specific technical terms, mechanisms and numbers such a note "
    "would contain. No preamble, no headings, no lists."
)


class RetrievedChunk(BaseModel):
    chunk_id: str
    document_id: str
    source_path: str
    title: str
    heading_path: str
    content: str
    score: float


def hyde_messages(query: str) -> list[dict]:
    return [{"role": "system", "content": HYDE_SYSTEM}, {"role": "user", "content": query}]


async def gateway_hyde(query: str, thread_id: str | None) -> str:
    """A hypothetical answer from the LLM gateway's "hyde" role."""
    from tools.llm import get_gateway

    res = await get_gateway().complete_text("hyde", hyde_messages(query), thread_id=thread_id,
                                            max_tokens=get_settings().hyde_max_tokens)
    return res.text


@dataclass
class RetrievalTrace:
    """What the last retrieve() did (the eval and the CLI print it)."""

    query: str = ""
    hypothesis: str | None = None
    hyde_error: str | None = None
    vector_hits: int = 0
    text_hits: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)


class Retriever:
    def __init__(self, *, db: Database | None = None, embedder: Embedder | None = None,
                 hyde_generate: HydeGenerator | None = None, settings: Settings | None = None,
                 hyde_combine: str = "sum"):
        if hyde_combine not in ("sum", "hypothesis"):
            raise ValueError("hyde_combine must be 'sum' or 'hypothesis'")
        self._db, self._embedder, self._settings = db, embedder, settings
        self.hyde_generate = hyde_generate
        self.hyde_combine = hyde_combine
        self.last = RetrievalTrace()

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    @property
    def embedder(self) -> Embedder:
        return self._embedder or get_embedder()

    async def store(self) -> CorpusStore:
        return CorpusStore(self._db or await get_database())

    async def corpus_size(self) -> int:
        """Chunks in the corpus (any model: a mismatch is reported by retrieve, loudly)."""
        return await (await self.store()).count_chunks()

    async def query_vector(self, query: str, *, hyde: bool, thread_id: str | None) -> np.ndarray:
        trace = self.last
        texts = [query]
        if hyde:
            t = time.perf_counter()
            gen = self.hyde_generate or _hyde_override or gateway_hyde
            try:
                hypothesis = (await gen(query, thread_id) or "").strip()
            except Exception as e:  # HyDE is an enhancement: never fail retrieval because of it
                log.warning("HyDE generation failed (%s: %s): searching with the query alone", type(e).__name__, e)
                trace.hyde_error = f"{type(e).__name__}: {e}"
                hypothesis = ""
            trace.timings_ms["hyde_llm"] = (time.perf_counter() - t) * 1000
            if hypothesis:
                trace.hypothesis = hypothesis
                texts.append(hypothesis)
        t = time.perf_counter()
        vecs = await self.embedder.embed(texts)
        trace.timings_ms["embed"] = (time.perf_counter() - t) * 1000
        if len(texts) == 1:
            return vecs[0]
        v = vecs[1] if self.hyde_combine == "hypothesis" else vecs[0] + vecs[1]
        return v / max(float(np.linalg.norm(v)), 1e-12)

    async def retrieve(self, query: str, *, k: int | None = None, hyde: bool | None = None,
                       hybrid: bool | None = None, filters: dict | None = None,
                       thread_id: str | None = None) -> list[RetrievedChunk]:
        s = self.settings
        k = k or s.retrieval_top_k
        hyde = s.retrieval_hyde if hyde is None else hyde
        hybrid = s.retrieval_hybrid if hybrid is None else hybrid
        self.last = RetrievalTrace(query=query)
        store = await self.store()
        embedder = self.embedder
        dim = await embedder.dimension()
        await store.check_compatible(embedder.name, dim)
        n = max(s.retrieval_candidates, 4 * k)

        qvec = await self.query_vector(query, hyde=hyde, thread_id=thread_id)
        t = time.perf_counter()
        dense = await store.vector_search(qvec, embed_model=embedder.name, dim=dim, limit=n, filters=filters,
                                          ef_search=s.hnsw_ef_search)
        self.last.timings_ms["vector_sql"] = (time.perf_counter() - t) * 1000
        self.last.vector_hits = len(dense)
        if hybrid:
            t = time.perf_counter()
            sparse = await store.text_search(query, embed_model=embedder.name, dim=dim, limit=n, filters=filters)
            self.last.timings_ms["text_sql"] = (time.perf_counter() - t) * 1000
            self.last.text_hits = len(sparse)
            ranked = rrf_fuse([dense, sparse], k=s.retrieval_rrf_k)
        else:
            ranked = dense
        return [RetrievedChunk(chunk_id=r["chunk_id"], document_id=r["document_id"], source_path=r["source_path"],
                               title=r["title"], heading_path=r["heading_path"], content=r["content"],
                               score=float(r["score"]))
                for r in dedup_per_source(ranked)[:k]]


def rrf_fuse(rankings: list[list[dict]], *, k: int = 60) -> list[dict]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank). Ties keep dense order."""
    scores: dict[str, float] = {}
    rows: dict[str, dict] = {}
    order: dict[str, int] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking, start=1):
            cid = row["chunk_id"]
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (k + rank)
            rows.setdefault(cid, row)
            order.setdefault(cid, len(order))
    fused = sorted(scores, key=lambda c: (-scores[c], order[c]))
    return [{**rows[c], "score": scores[c]} for c in fused]


def dedup_per_source(rows: list[dict]) -> list[dict]:
    seen: set[str] = set()
    out = []
    for r in rows:
        if r["document_id"] in seen:
            continue
        seen.add(r["document_id"])
        out.append(r)
    return out


# --- the module-level seam -----------------------------------------------------------------------

_hyde_override: HydeGenerator | None = None
_default: Retriever | None = None


def set_hyde_generator(fn: HydeGenerator | None) -> None:
    """Route HyDE through another generator (None = the LLM gateway's "hyde" role)."""
    global _hyde_override
    _hyde_override = fn


def get_retriever() -> Retriever:
    global _default
    if _default is None:
        _default = Retriever()
    return _default


async def corpus_size() -> int:
    return await get_retriever().corpus_size()


async def retrieve(query: str, *, k: int | None = None, hyde: bool | None = None, hybrid: bool | None = None,
                   filters: dict | None = None, thread_id: str | None = None) -> list[RetrievedChunk]:
    return await get_retriever().retrieve(query, k=k, hyde=hyde, hybrid=hybrid, filters=filters,
                                          thread_id=thread_id)
