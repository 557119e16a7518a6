"""Ingestion benchmark with vectors given (no embedding): 1 and 4 concurrent writers.

    python -m evals.bench.ingest [--docs 500] [--chunks-per-doc 20]

Writes documents through the production path, CorpusStore.upsert_documents (what `newsroom
ingest` calls): per transaction, pipelined document upserts (skipped when the hash is the
same), one DELETE of replaced chunks and one binary COPY of the new ones, retried on 40001; one
document per transaction, or --batch documents per transaction (as ingestion batches files).
In a scratch database on the configured server. Two table states:
- "hnsw": the deployed schema, every insert also updates the HNSW index;
- "bulk": the vector index dropped during the load (rebuild time reported separately), the way
  to load a large corpus.
Writers are asyncio tasks with their own pooled connections (one client process; the server
side is concurrent). The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import numpy as np

QUICK_ARGS = ["--docs", "200", "--hnsw-docs", "20"]  # evals.bench.run_all --quick
SEED_ANCHORS = {"pg_1_writer_docs_s": 717, "pg_4_writers_docs_s": 666, "crdb_1_writer_docs_s": 383,
                "crdb_4_writers_docs_s": 640, "chroma_1_writer_docs_s": 1258, "corpus_chunks": 106}
DIM = 384
MODEL = "bench-synthetic-384"


def make_docs(n_docs: int, per_doc: int, rng: np.random.Generator, tag: str):
    from storage.corpus import ChunkIn, DocumentIn

    docs = []
    for d in range(n_docs):
        v = rng.normal(size=(per_doc, DIM)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        text = "chunk text about KV caches and adapters, roughly a paragraph long. " * 8
        chunks = [ChunkIn(i, "Section > Sub", f"{text} {d}.{i}", f"{tag}-{d}-{i}", v[i]) for i in range(per_doc)]
        docs.append(DocumentIn(f"bench://{tag}/{d}", f"doc {d}", f"{tag}-{d}", chunks, {"tags": [tag]}))
    return docs


async def write_all(store, docs, writers: int, batch: int) -> tuple[float, int]:
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(0, len(docs), batch):
        queue.put_nowait(docs[i:i + batch])
    retries_before = store.db.stats.retries

    async def worker():
        while True:
            try:
                group = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            statuses = await store.upsert_documents(group, embed_model=MODEL, dim=DIM)
            assert statuses == ["inserted"] * len(group), statuses

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(writers)))
    return time.perf_counter() - t, store.db.stats.retries - retries_before


async def main_async(n_docs: int, per_doc: int, batch: int = 50, hnsw_docs: int = 100) -> dict:
    from storage import bench as sb
    from storage.corpus import CorpusStore

    rng = np.random.default_rng(5)
    out = {"bench": "ingest", "dim": DIM, "docs": n_docs, "chunks_per_doc": per_doc, "results": []}
    configs = [("bulk", 1, 1), ("bulk", 4, 1), ("bulk", 1, batch), ("bulk", 4, batch),
               ("hnsw", 1, batch), ("hnsw", 4, batch)]
    for state, writers, per_tx in configs:
        n = n_docs if state == "bulk" else hnsw_docs
        db = await sb.scratch_database(f"newsroom_bench_ingest_{state}_{writers}_{per_tx}")
        try:
            store = CorpusStore(db)
            if state == "bulk":
                await sb.drop_vector_index(db, DIM)
            else:
                await store.ensure_vector_index(DIM)
            docs = make_docs(n, per_doc, rng, f"{state}{writers}x{per_tx}")
            secs, retries = await write_all(store, docs, writers, per_tx)
            chunks = n * per_doc
            row = {"state": state, "writers": writers, "docs_per_transaction": per_tx, "docs": n,
                   "seconds": round(secs, 2), "docs_per_s": round(n / secs, 1), "chunks_per_s": round(chunks / secs),
                   "retries_40001": retries, "dialect": db.dialect, "loadavg_1m": round(os.getloadavg()[0], 2)}
            if state == "bulk" and per_tx == batch and writers == 1:
                row["index_build_s"] = round(await sb.build_vector_index(db, DIM), 2)
                row["chunks_per_s_incl_index_build"] = round(chunks / (secs + row["index_build_s"]))
            got = await store.count_chunks()
            assert got == chunks, (got, chunks)
            out["results"].append(row)
            extra = (f"; + HNSW build {row['index_build_s']}s -> {row['chunks_per_s_incl_index_build']:,} chunks/s"
                     if "index_build_s" in row else "")
            label = "no vector index" if state == "bulk" else "HNSW maintained"
            print(f"{label:<16} {writers} writer(s), {per_tx:>3} doc(s)/tx: {n} docs x {per_doc} chunks in {secs:6.2f}s"
                  f" = {row['docs_per_s']:>7,} docs/s, {row['chunks_per_s']:>6,} chunks/s, {retries} retries{extra}"
                  f" (load {row['loadavg_1m']})", flush=True)
        finally:
            await sb.drop_scratch_database(db)
    print(f"seed anchors (106 chunks, M1 Pro, one chunk per 'doc'): PostgreSQL {SEED_ANCHORS['pg_1_writer_docs_s']} / "
          f"{SEED_ANCHORS['pg_4_writers_docs_s']} doc/s (1 / 4 writers), CockroachDB {SEED_ANCHORS['crdb_1_writer_docs_s']}"
          f" / {SEED_ANCHORS['crdb_4_writers_docs_s']} doc/s, Chroma {SEED_ANCHORS['chroma_1_writer_docs_s']} doc/s. "
          "Goal here: >= 3,000 chunks/s.")
    out["seed_anchors"] = SEED_ANCHORS
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="corpus ingestion throughput, vectors given")
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--chunks-per-doc", type=int, default=20)
    ap.add_argument("--batch", type=int, default=50, help="documents per transaction in the batched runs")
    ap.add_argument("--hnsw-docs", type=int, default=100, help="documents for the HNSW-maintained runs (slow)")
    a = ap.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(a.docs, a.chunks_per_doc, a.batch, a.hnsw_docs))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
