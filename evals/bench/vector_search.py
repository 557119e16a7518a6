"""Vector search benchmark: HNSW on pgvector at 10k and 100k chunks x 384-d.

    python -m evals.bench.vector_search [--sizes 10000,100000] [--queries 1000] [--ef 40,100,200]

The server: a private embedded PostgreSQL configured as the product configures its own
(storage/embedded.py: SERIALIZABLE, shared_buffers 512MB) plus pg_stat_statements, started and
stopped here; with DATABASE_URL set, that server instead (its pg_stat_statements, if loaded,
gives the server times; its statistics are reset).
Per size, in a scratch database: load synthetic unit vectors through the real write path
(CorpusStore, binary COPY) without the vector index, build the HNSW index (timed), prewarm, then
run queries through CorpusStore.vector_search (the production path: one round trip with the
transaction-local ef_search, binary query vector) and report, per query, p50/p99 of
  total  = wall time of the call in this process;
  server = PostgreSQL's planning + execution of the call's statements (pg_stat_statements,
           read after each call), planning also apart;
  client = total - server: psycopg, asyncio, the socket and waiting for a core, both sides;
and recall@10 against an exact scan, for several ef_search values; also with a metadata filter
matching 10% of the documents (similarity + a SQL predicate in one statement).

Synthetic data: a mixture of 200 Gaussian clusters in 384-d (real embeddings are clustered by
topic; uniform random vectors are the unrealistic worst case for any ANN index), normalised.
Queries are fresh draws from the same mixture. Exact neighbours come from numpy on the same
vectors (checked against the database's own exact scan for a few queries).
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

QUICK_ARGS = ["--sizes", "10000", "--queries", "100", "--ef", "100"]  # evals.bench.run_all --quick
SEED_ANCHORS = {"pg_sim_p50_ms": 3.7, "pg_sim_p99_ms": 7.7, "crdb_sim_p50_ms": 3.7, "crdb_sim_p99_ms": 4.3,
                "pg_hybrid_p99_ms": 12.0, "crdb_hybrid_p99_ms": 4.4, "chunks": 106}
DIM = 384
MODEL = "bench-synthetic-384"
CHUNKS_PER_DOC = 100


def synthetic(n: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    idx = rng.integers(0, len(centers), size=n)
    v = centers[idx] + rng.normal(scale=0.06, size=(n, DIM)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def load(store, vecs: np.ndarray, tagged_every: int = 10) -> float:
    from storage.corpus import ChunkIn, DocumentIn

    t = time.perf_counter()
    for d in range(0, len(vecs), CHUNKS_PER_DOC):
        doc_no = d // CHUNKS_PER_DOC
        chunks = [ChunkIn(i - d, "", str(i), f"h{i}", vecs[i]) for i in range(d, min(d + CHUNKS_PER_DOC, len(vecs)))]
        meta = {"tags": ["filtered"]} if doc_no % tagged_every == 0 else {"tags": ["other"]}
        await store.upsert_document(DocumentIn(f"bench://doc/{doc_no}", f"doc {doc_no}", f"d{doc_no}", chunks, meta),
                                    embed_model=MODEL, dim=DIM)
    return time.perf_counter() - t


def _p50_p99(values: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(values), 3), "p99_ms": round(pct(values, 99), 3)}


async def run_queries(store, queries: np.ndarray, truth: list[set[int]], *, ef: int, filters=None,
                      server_time=None) -> dict:
    lat, server, planning, recalls = [], [], [], []
    load0 = os.getloadavg()[0]
    for q, gold in zip(queries, truth):
        before = server_time.totals() if server_time else None
        t = time.perf_counter()
        rows = await store.vector_search(q, embed_model=MODEL, dim=DIM, limit=10, filters=filters, ef_search=ef)
        lat.append((time.perf_counter() - t) * 1000)
        if server_time:
            after = server_time.totals()
            planning.append(after[0] - before[0])
            server.append(after[0] + after[1] - before[0] - before[1])
        got = {int(r["content"]) for r in rows}
        recalls.append(len(got & gold) / len(gold))
    out = {"ef_search": ef, **_p50_p99(lat), "recall@10": round(float(np.mean(recalls)), 4), "queries": len(queries),
           "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    if server_time:
        out["server"] = _p50_p99(server)
        out["server_planning"] = _p50_p99(planning)
        out["client"] = _p50_p99([t - s for t, s in zip(lat, server)])
    return out


async def indexed_synthetic_corpus(db, store, n: int, n_queries: int,
                                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
    """n synthetic chunks loaded without the vector index, the HNSW index built, analyzed and
    prewarmed; plus n_queries fresh queries. Returns (vectors, queries, load s, build s, prewarmed)."""
    from storage import bench as sb

    centers = rng.normal(size=(200, DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    vecs = synthetic(n, rng, centers)
    queries = synthetic(n_queries, rng, centers)
    await sb.drop_vector_index(db, DIM)
    load_s = await load(store, vecs)
    build_s = await sb.build_vector_index(db, DIM)
    await sb.analyze(db)
    return vecs, queries, load_s, build_s, await sb.prewarm(db, DIM)


async def bench_size(n: int, n_queries: int, efs: list[int], rng: np.random.Generator) -> dict:
    import psycopg

    from storage import bench as sb
    from storage.corpus import CorpusStore

    db = await sb.scratch_database(f"newsroom_bench_vec_{n}")
    server_time = None
    try:
        store = CorpusStore(db)
        vecs, queries, load_s, build_s, warmed = await indexed_synthetic_corpus(db, store, n, n_queries, rng)
        sizes = await sb.relation_sizes(db)
        server = await sb.server_settings(db)

        sims = queries @ vecs.T
        truth = [set(np.argsort(-row)[:10].tolist()) for row in sims]
        tagged = np.array([(i // CHUNKS_PER_DOC) % 10 == 0 for i in range(n)])
        sims_f = np.where(tagged[None, :], sims, -np.inf)
        truth_f = [set(np.argsort(-row)[:10].tolist()) for row in sims_f]
        # the database's own exact scan agrees with numpy (spot check)
        agree = []
        for q, gold in list(zip(queries, truth))[:5]:
            ids = await store.exact_search_ids(q, embed_model=MODEL, dim=DIM, limit=10)
            rows = await store.chunks_by_id(ids)
            agree.append(len({int(r["content"]) for r in rows} & gold) / 10)

        for q in queries[:20]:  # warm the cache and the plan
            await store.vector_search(q, embed_model=MODEL, dim=DIM, limit=10)
        try:
            server_time = sb.ServerTime(db.url)
        except psycopg.Error as err:  # pg_stat_statements not loaded on this server
            print(f"  no server times: {str(err).strip().splitlines()[0]}", flush=True)
        plain = [await run_queries(store, queries, truth, ef=ef, server_time=server_time) for ef in efs]
        filtered = [await run_queries(store, queries, truth_f, ef=ef, filters={"tags": ["filtered"]},
                                      server_time=server_time) for ef in efs]
        return {"chunks": n, "dim": DIM, "load_s": round(load_s, 2), "load_chunks_per_s": round(n / load_s),
                "index_build_s": round(build_s, 2), "exact_scan_agrees_with_numpy": float(np.mean(agree)),
                "table_bytes": sizes.get("chunks"), "hnsw_bytes": sizes.get(f"chunks_embedding_{DIM}_hnsw"),
                "similarity": plain, "filtered_10pct": filtered, "dialect": db.dialect, "prewarmed": warmed,
                "server": server, "loadavg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    finally:
        if server_time:
            server_time.close()
        await sb.drop_scratch_database(db)


GOAL = {"chunks": 100_000, "p99_ms": 5.0, "recall@10": 0.95}  # issue 18, item 3


def _line(label: str, x: dict) -> str:
    text = (f"  {label:<13} ef_search={x['ef_search']:<4} total p50 {x['p50_ms']:5.2f} / p99 {x['p99_ms']:5.2f} ms")
    if "server" in x:
        text += (f" | server p50 {x['server']['p50_ms']:5.2f} / p99 {x['server']['p99_ms']:5.2f} (planning p99 "
                 f"{x['server_planning']['p99_ms']:.2f}) | client p50 {x['client']['p50_ms']:5.2f} / p99 "
                 f"{x['client']['p99_ms']:5.2f}")
    return text + (f" | recall@10 {x['recall@10']:.3f} ({x['queries']} queries, load {x['loadavg_1m'][0]}"
                   f"-{x['loadavg_1m'][1]})")


def goal_verdict(results: list[dict], ef: int) -> dict:
    """The goal's figure: the unfiltered search at GOAL's size with the product's ef_search."""
    for r in results:
        if r["chunks"] != GOAL["chunks"]:
            continue
        for x in r["similarity"]:
            if x["ef_search"] == ef:
                met = x["p99_ms"] <= GOAL["p99_ms"] and x["recall@10"] >= GOAL["recall@10"]
                return {**GOAL, "ef_search": ef, "measured_p99_ms": x["p99_ms"], "measured_recall@10": x["recall@10"],
                        "met": met}
    return {**GOAL, "ef_search": ef, "met": None}


async def main_async(sizes: list[int], n_queries: int, efs: list[int]) -> dict:
    from config import get_settings

    rng = np.random.default_rng(12)
    out = {"bench": "vector_search", "dim": DIM, "index": "hnsw m=16 ef_construction=64", "results": []}
    for n in sizes:
        print(f"== {n:,} chunks x {DIM}-d ==", flush=True)
        r = await bench_size(n, n_queries, efs, rng)
        out["results"].append(r)
        print(f"  load (binary COPY, no vector index): {r['load_s']:.1f}s = {r['load_chunks_per_s']:,} chunks/s; "
              f"HNSW build {r['index_build_s']:.1f}s; exact scan agrees with numpy: {r['exact_scan_agrees_with_numpy']:.2f}")
        if r["table_bytes"]:
            print(f"  sizes: table+indexes {r['table_bytes'] / 1e6:.0f} MB, of which HNSW {(r['hnsw_bytes'] or 0) / 1e6:.0f} MB;"
                  f" server {r['server']}; prewarmed: {r['prewarmed']}; load average {r['loadavg_1m']} on {r['cpus']} CPUs")
        for label, rows in (("similarity", r["similarity"]), ("filtered 10%", r["filtered_10pct"])):
            for x in rows:
                print(_line(label, x), flush=True)
    print("  (server = PostgreSQL planning + execution from pg_stat_statements; client = total - server)")
    print(f"seed anchors (106 chunks, M1 Pro): PostgreSQL+IVFFlat similarity p50 {SEED_ANCHORS['pg_sim_p50_ms']} / "
          f"p99 {SEED_ANCHORS['pg_sim_p99_ms']} ms, hybrid p99 {SEED_ANCHORS['pg_hybrid_p99_ms']} ms; CockroachDB "
          f"(no index) p50 {SEED_ANCHORS['crdb_sim_p50_ms']} / p99 {SEED_ANCHORS['crdb_sim_p99_ms']} ms, "
          f"hybrid p99 {SEED_ANCHORS['crdb_hybrid_p99_ms']} ms.")
    out["goal"] = goal_verdict(out["results"], get_settings().hnsw_ef_search)
    g = out["goal"]
    out["goals"] = [{"name": f"vector search p99 at {g['chunks']:,} x {DIM}-d, ef_search {g['ef_search']}",
                     "measured": g.get("measured_p99_ms"), "goal": f"<= {g['p99_ms']} ms", "met": g["met"],
                     "detail": f"recall@10 {g.get('measured_recall@10')} (goal >= {g['recall@10']})"}]
    if g["met"] is None:
        print(f"goal: p99 <= {g['p99_ms']} ms with recall@10 >= {g['recall@10']} at {g['chunks']:,} chunks, "
              f"ef_search {g['ef_search']} (NEWSROOM_HNSW_EF_SEARCH): not measured in this run")
    else:
        print(f"goal: p99 <= {g['p99_ms']} ms with recall@10 >= {g['recall@10']} at {g['chunks']:,} chunks, "
              f"ef_search {g['ef_search']} (NEWSROOM_HNSW_EF_SEARCH): p99 {g['measured_p99_ms']} ms, recall@10 "
              f"{g['measured_recall@10']}: {'met' if g['met'] else 'MISSED'}")
    out["seed_anchors"] = SEED_ANCHORS
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="pgvector HNSW search latency and recall")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=1000)  # p99 of 300 was the 3rd-worst query: too noisy
    ap.add_argument("--ef", default="40,100,200")
    a = ap.parse_args(argv)
    out = on_bench_server(main_async([int(x) for x in a.sizes.split(",")], a.queries,
                                     [int(x) for x in a.ef.split(",")]))
    print(json.dumps(out))
    return 0


def on_bench_server(coro):
    """Run coro on DATABASE_URL's server if set, else on a private embedded PostgreSQL configured
    as the product's (storage/embedded.py) with pg_stat_statements loaded, removed afterwards."""
    if os.environ.get("DATABASE_URL"):
        return asyncio.run(coro)
    from evals.chaos.support import private_postgres
    from storage import bench as sb

    with tempfile.TemporaryDirectory(prefix="newsroom-bench-vec-") as tmp, private_postgres(Path(tmp)) as (_, d):
        sb.enable_statement_stats_embedded(d / "pg")
        return asyncio.run(coro)


if __name__ == "__main__":
    raise SystemExit(main())
