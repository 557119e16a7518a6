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
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field

from config import Settings, get_settings
from storage.connect import get_database
from storage.corpus import CorpusStore, EmbeddingMismatchError
from storage.db import Database
from tools.embeddings import Embedder, get_embedder

log = logging.getLogger(__name__)

__all__ = [
    "EmbeddingMismatchError",
    "MultiSearch",
    "NoteHit",
    "RetrievedChunk",
    "Retriever",
    "corpus_size",
    "get_retriever",
    "has_corpus",
    "hyde_messages",
    "retrieve",
    "set_hyde_generator",
]

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
    cosine: float | None = None  # similarity to the search vector (None: not measured)


class NoteHit(BaseModel):
    """One note (document) found by a multi-query search: its best chunk and the aggregate score."""

    chunk_id: str
    document_id: str
    source_path: str
    title: str
    heading: str
    content: str
    score: float
    cosine: float
    queries: list[int] = Field(default_factory=list)


class MultiSearch(BaseModel):
    queries: list[str]
    candidates: list[NoteHit]  # above the floor, best first
    below_floor: list[str]  # titles of notes the floor cut
    floor: float
    best_cosine: float | None = None


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

    async def corpus_size(self, *, outside_prefix: str | None = None) -> int:
        """Chunks in the corpus (any model: a mismatch is reported by retrieve, loudly); with
        outside_prefix, those whose source path does not start with it."""
        return await (await self.store()).count_chunks(outside_prefix=outside_prefix)

    async def has_corpus(self, *, outside_prefix: str) -> bool:
        """Whether the corpus has any chunk outside the prefix (cheaper than corpus_size)."""
        return await (await self.store()).has_chunks(outside_prefix=outside_prefix)

    async def query_vector(self, query: str, *, hyde: bool, thread_id: str | None) -> np.ndarray:
        trace = self.last
        texts = [query]
        if hyde:
            t = time.perf_counter()
            gen = self.hyde_generate or _hyde_override or gateway_hyde
            try:
                hypothesis = (await gen(query, thread_id) or "").strip()
            except Exception as e:  # noqa: BLE001 - HyDE is an enhancement: never fail retrieval because of it
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
        v = vecs[1] if self.hyde_combine == "hypothesis" else vecs[0] + self.settings.retrieval_hyde_weight * vecs[1]
        return v / max(float(np.linalg.norm(v)), 1e-12)

    async def search_many(self, queries: list[tuple[str, str | None]], *, k: int, hyde: bool | None = None,
                          hybrid: bool | None = None, filters: dict | None = None, thread_id: str | None = None,
                          floor: float | None = None, aggregate: str | None = None) -> MultiSearch:
        """Several searches fused into one ranking of notes (the Researcher's plan: the topic, then
        its sub-questions). Each query is (text, hypothesis): hypothesis None = HyDE from the
        gateway (if on), "" = the text alone, else that sentence is the HyDE text (the plan wrote
        it, no further LLM call). Every dense and full-text ranking is fused by RRF per chunk; a
        note's score is the sum (aggregate "sum") or the best (aggregate "max") of its chunks'; a
        note whose best cosine to any search vector is below `floor` is cut."""
        s = self.settings
        hyde = s.retrieval_hyde if hyde is None else hyde
        hybrid = s.retrieval_hybrid if hybrid is None else hybrid
        floor = s.retrieval_floor if floor is None else floor
        aggregate = aggregate or s.retrieval_aggregate
        self.last = RetrievalTrace(query=" | ".join(q for q, _ in queries))
        store = await self.store()
        embedder = self.embedder
        dim = await embedder.dimension()
        await store.check_compatible(embedder.name, dim)
        n = max(s.retrieval_candidates, 4 * k)
        vectors = await self._vectors(queries, hyde=hyde, thread_id=thread_id)
        rankings: list[list[dict]] = []
        note_rankings: list[list[str]] = []
        chunk_w: list[float] = []
        note_w: list[float] = []
        cosines: dict[str, float] = {}
        found_by: dict[str, set[int]] = {}
        for i, ((text, _), vec) in enumerate(zip(queries, vectors)):
            first = len(rankings)
            dense = await store.vector_search(vec, embed_model=embedder.name, dim=dim, limit=n, filters=filters,
                                              ef_search=s.hnsw_ef_search)
            self.last.vector_hits += len(dense)
            rankings.append(dense)
            for r in dense:
                cosines[r["chunk_id"]] = max(cosines.get(r["chunk_id"], -1.0), float(r["score"]))
                found_by.setdefault(r["document_id"], set()).add(i)
            if hybrid:
                sparse = await store.text_search(text, embed_model=embedder.name, dim=dim, limit=n, filters=filters,
                                                 cosine_to=vec)
                self.last.text_hits += len(sparse)
                rankings.append(sparse)
                for r in sparse:
                    cosines[r["chunk_id"]] = max(cosines.get(r["chunk_id"], -1.0), float(r["cosine"]))
                    found_by.setdefault(r["document_id"], set()).add(i)
            # The first search (the topic) ranks; the others (sub-questions) add candidates with
            # less say: the local model's plans were measured to pull rankings off the topic.
            w = 1.0 if i == 0 else s.research_subquestion_weight
            chunk_w += [w] * (len(rankings) - first)
            if aggregate == "mean":
                added = await self._note_rankings(store, vec, rankings[first:], embedder.name, dim)
                note_rankings += added
                note_w += [w] * len(added)
        fused = rrf_fuse(rankings, k=s.retrieval_rrf_k, weights=chunk_w)
        notes = (fuse_notes(fused, note_rankings, k=s.retrieval_rrf_k, weights=note_w) if aggregate == "mean"
                 else aggregate_per_note(fused, how=aggregate))
        kept, cut = [], []
        for note_score, row in notes:
            best = max(cosines.get(c, -1.0) for c in row["_chunks"])
            hit = NoteHit(chunk_id=row["chunk_id"], document_id=row["document_id"], source_path=row["source_path"],
                          title=row["title"], heading=row["heading_path"], content=row["content"],
                          score=note_score, cosine=best, queries=sorted(found_by.get(row["document_id"], ())))
            (kept if best >= floor else cut).append(hit)
        best_cos = max((h.cosine for h in kept + cut), default=None)
        return MultiSearch(queries=[q for q, _ in queries], candidates=kept[:max(k, 1) * 2],
                           below_floor=[h.title for h in cut[:5]], floor=floor, best_cosine=best_cos)

    async def _note_rankings(self, store: CorpusStore, vec: np.ndarray, rankings: list[list[dict]], model: str,
                             dim: int) -> list[list[str]]:
        """Note-level rankings of one search: each chunk ranking collapsed to its notes (best chunk
        first), plus the candidate notes ranked by the mean cosine of ALL their chunks."""
        out = [list(dict.fromkeys(r["document_id"] for r in ranking)) for ranking in rankings]
        docs = list(dict.fromkeys(d for ranking in out for d in ranking))
        means = await store.note_mean_cosines(vec, docs, embed_model=model, dim=dim)
        out.append(sorted(means, key=lambda d: (-means[d], docs.index(d))))
        return out

    async def _vectors(self, queries: list[tuple[str, str | None]], *, hyde: bool,
                       thread_id: str | None) -> list[np.ndarray]:
        texts: list[str] = []
        spans: list[tuple[int, int]] = []
        for text, hypothesis in queries:
            extra = hypothesis
            if hypothesis is None and hyde:
                extra = await self._hypothesis(text, thread_id)
            start = len(texts)
            texts.append(text)
            if extra and extra.strip():
                texts.append(extra.strip())
            spans.append((start, len(texts)))
        vecs = await self.embedder.embed(texts)
        out = []
        for a, b in spans:
            w = self.settings.retrieval_hyde_weight
            v = vecs[a] if b - a == 1 else (vecs[a + 1] if self.hyde_combine == "hypothesis" else vecs[a] + w * vecs[a + 1])
            out.append(v / max(float(np.linalg.norm(v)), 1e-12))
        return out

    async def _hypothesis(self, query: str, thread_id: str | None) -> str:
        gen = self.hyde_generate or _hyde_override or gateway_hyde
        try:
            text = (await gen(query, thread_id) or "").strip()
        except Exception as e:  # noqa: BLE001 - HyDE is an enhancement: never fail retrieval because of it
            log.warning("HyDE generation failed (%s: %s): searching with the query alone", type(e).__name__, e)
            self.last.hyde_error = f"{type(e).__name__}: {e}"
            return ""
        self.last.hypothesis = text or None
        return text

    async def retrieve(self, query: str, *, k: int | None = None, hyde: bool | None = None,
                       hybrid: bool | None = None, filters: dict | None = None,
                       thread_id: str | None = None, aggregate: str | None = None) -> list[RetrievedChunk]:
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
        cosines = {r["chunk_id"]: float(r["score"]) for r in dense}
        if hybrid:
            t = time.perf_counter()
            sparse = await store.text_search(query, embed_model=embedder.name, dim=dim, limit=n, filters=filters,
                                             cosine_to=qvec)
            self.last.timings_ms["text_sql"] = (time.perf_counter() - t) * 1000
            self.last.text_hits = len(sparse)
            for r in sparse:
                cosines.setdefault(r["chunk_id"], float(r["cosine"]))
            ranked = rrf_fuse([dense, sparse], k=s.retrieval_rrf_k)
        else:
            ranked = dense
        aggregate = aggregate or s.retrieval_aggregate
        if aggregate == "max":
            picked = dedup_per_source(ranked)[:k]
        elif aggregate == "mean":
            arms = [dense] + ([sparse] if hybrid else [])
            notes = fuse_notes(ranked, await self._note_rankings(store, qvec, arms, embedder.name, dim),
                               k=s.retrieval_rrf_k)
            picked = [{**row, "score": sc} for sc, row in notes[:k]]
        else:
            picked = [{**row, "score": sc} for sc, row in aggregate_per_note(ranked, how=aggregate)[:k]]
        return [RetrievedChunk(chunk_id=r["chunk_id"], document_id=r["document_id"], source_path=r["source_path"],
                               title=r["title"], heading_path=r["heading_path"], content=r["content"],
                               score=float(r["score"]), cosine=cosines.get(r["chunk_id"]))
                for r in picked]


def rrf_fuse(rankings: list[list[dict]], *, k: int = 60, weights: list[float] | None = None) -> list[dict]:
    """Reciprocal rank fusion: score(d) = sum over rankings of w / (k + rank). Ties keep dense order."""
    scores: dict[str, float] = {}
    rows: dict[str, dict] = {}
    order: dict[str, int] = {}
    for i, ranking in enumerate(rankings):
        w = weights[i] if weights else 1.0
        for rank, row in enumerate(ranking, start=1):
            cid = row["chunk_id"]
            scores[cid] = scores.get(cid, 0.0) + w / (k + rank)
            rows.setdefault(cid, row)
            order.setdefault(cid, len(order))
    fused = sorted(scores, key=lambda c: (-scores[c], order[c]))
    return [{**rows[c], "score": scores[c]} for c in fused]


def aggregate_per_note(ranked: list[dict], *, how: str = "sum") -> list[tuple[float, dict]]:
    """Notes ranked by their chunks' scores: "sum" (a note with several matching chunks rises) or
    "max" (its best chunk). Each note is represented by its best chunk; "_chunks" lists them all."""
    if how not in ("sum", "max"):
        raise ValueError("aggregate must be 'sum', 'max' or 'mean'")
    best: dict[str, dict] = {}
    total: dict[str, float] = {}
    order: dict[str, int] = {}
    for row in ranked:
        doc = row["document_id"]
        sc = float(row["score"])
        if doc not in best:
            best[doc] = {**row, "_chunks": [row["chunk_id"]]}
            total[doc] = sc
            order[doc] = len(order)
        else:
            best[doc]["_chunks"].append(row["chunk_id"])
            total[doc] = total[doc] + sc if how == "sum" else max(total[doc], sc)
    docs = sorted(best, key=lambda d: (-total[d], order[d]))
    return [(total[d], best[d]) for d in docs]


def fuse_notes(fused_chunks: list[dict], note_rankings: list[list[str]], *, k: int = 60,
               weights: list[float] | None = None) -> list[tuple[float, dict]]:
    """Notes ranked by (weighted) reciprocal rank fusion of note-level rankings; each note is
    represented by its best chunk in the chunk-level fusion `fused_chunks`."""
    best = {row["document_id"]: row for sc, row in aggregate_per_note(fused_chunks, how="max")}
    scores: dict[str, float] = {}
    for i, ranking in enumerate(note_rankings):
        w = weights[i] if weights else 1.0
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    order = {d: i for i, d in enumerate(best)}
    docs = sorted((d for d in scores if d in best), key=lambda d: (-scores[d], order[d]))
    return [(scores[d], best[d]) for d in docs]


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


def warm_up_embedder() -> bool:
    """Start loading the retriever's embedding model in a background thread; True if it started.

    The Researcher's plan call waits seconds to minutes on the LLM server (another process) while
    this process idles; loading the model then (6-12 s on 2 cores) takes it off the post's path.
    A failure here is only logged: the first real embed raises the clear error."""
    embedder = get_retriever().embedder
    if getattr(embedder, "loaded", True) or not hasattr(embedder, "load"):
        return False

    def load() -> None:
        try:
            embedder.load()
        except Exception as err:  # noqa: BLE001 - reported again, with its fix, by the first embed
            log.warning("embedding model warm-up failed: %s", err)

    threading.Thread(target=load, name="embedder-warm-up", daemon=True).start()
    return True


async def corpus_size(*, outside_prefix: str | None = None) -> int:
    return await get_retriever().corpus_size(outside_prefix=outside_prefix)


async def has_corpus(*, outside_prefix: str) -> bool:
    return await get_retriever().has_corpus(outside_prefix=outside_prefix)


async def retrieve(query: str, *, k: int | None = None, hyde: bool | None = None, hybrid: bool | None = None,
                   filters: dict | None = None, thread_id: str | None = None) -> list[RetrievedChunk]:
    return await get_retriever().retrieve(query, k=k, hyde=hyde, hybrid=hybrid, filters=filters,
                                          thread_id=thread_id)
