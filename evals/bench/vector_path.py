"""The vector search path before and after issue 18, side by side in one run:

    python -m evals.bench.vector_path [--chunks 100000] [--queries 1000] [--ef 100]

"before" is the path as it was (kept here for this comparison only): a transaction of three round
trips (BEGIN; the ef_search settings and the query pipelined; COMMIT), the query vector as a
9-digit text literal, `LIMIT $n` as a parameter (PostgreSQL re-planned the prepared statement on
every call) and two joins to documents. "after" is CorpusStore.vector_search as it ships. Same
index, same queries, the two interleaved query by query in a random order, each call's server
time (pg_stat_statements planning + execution) taken apart from the client's, as in
evals/bench/vector_search.py. The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

import numpy as np
from psycopg import sql

from evals.bench.vector_search import DIM, MODEL, indexed_synthetic_corpus, on_bench_server, pct

QUICK_ARGS = ["--chunks", "10000", "--queries", "100"]  # evals.bench.run_all --quick


def _before_sql() -> sql.Composed:
    return sql.SQL("""
WITH hits AS MATERIALIZED (
    SELECT c.id, c.document_id, c.heading_path, c.content, c.ordinal,
           (c.embedding::vector({d})) <=> %(q)s::vector({d}) AS distance
    FROM chunks c JOIN documents d ON d.id = c.document_id
    WHERE c.dim = {d} AND c.embed_model = %(model)s
    ORDER BY distance
    LIMIT %(limit)s
)
SELECT h.id::text AS chunk_id, h.document_id::text AS document_id, d.source_path, d.title,
       h.heading_path, h.content, h.ordinal, 1 - h.distance AS score
FROM hits h JOIN documents d ON d.id = h.document_id
ORDER BY h.distance, h.id
""").format(d=sql.Literal(DIM))


async def main_async(chunks: int, n_queries: int, ef: int) -> dict:
    import psycopg

    from storage import bench as sb
    from storage import corpus_sql
    from storage.corpus import CorpusStore, vector_literal

    rng = np.random.default_rng(12)
    db = await sb.scratch_database("newsroom_bench_vec_path")
    server_time = None
    try:
        store = CorpusStore(db)
        vecs, queries, *_ = await indexed_synthetic_corpus(db, store, chunks, n_queries, rng)
        truth = [set(np.argsort(-row)[:10].tolist()) for row in queries @ vecs.T]
        before_query = _before_sql()

        async def before(vec):
            params = {"q": vector_literal(vec), "model": MODEL, "limit": 10}

            async def _search(conn):
                async with conn.pipeline():
                    await conn.execute(corpus_sql.PG_SEARCH_SETTINGS, {"ef_search": str(max(ef, 10))})
                    cur = await conn.execute(before_query, params)
                return await cur.fetchall()

            return await db.transaction(_search)

        async def after(vec):
            return await store.vector_search(vec, embed_model=MODEL, dim=DIM, limit=10, ef_search=ef)

        paths = {"before": before, "after": after}
        for q in queries[:30]:  # warm the cache and the plans
            for f in paths.values():
                await f(q)
        try:
            server_time = sb.ServerTime(db.url)
        except psycopg.Error as err:
            print(f"no server times: {str(err).strip().splitlines()[0]}", flush=True)
        figs = {k: {"total": [], "server": [], "planning": [], "recall": []} for k in paths}
        load0 = os.getloadavg()[0]
        order = list(paths)
        for q, gold in zip(queries, truth):
            random.shuffle(order)
            for name in order:
                b = server_time.totals() if server_time else (0.0, 0.0)
                t = time.perf_counter()
                rows = await paths[name](q)
                figs[name]["total"].append((time.perf_counter() - t) * 1000)
                a = server_time.totals() if server_time else (0.0, 0.0)
                figs[name]["server"].append(sum(a) - sum(b))
                figs[name]["planning"].append(a[0] - b[0])
                figs[name]["recall"].append(len({int(r["content"]) for r in rows} & gold) / 10)
        load1 = os.getloadavg()[0]
    finally:
        if server_time:
            server_time.close()
        await sb.drop_scratch_database(db)

    def p(v):
        return {"p50_ms": round(statistics.median(v), 3), "p99_ms": round(pct(v, 99), 3)}

    out = {"bench": "vector_path", "chunks": chunks, "queries": n_queries, "ef_search": ef,
           "loadavg_1m": [round(load0, 2), round(load1, 2)], "server_times": server_time is not None}
    for name, f in figs.items():
        out[name] = {"total": p(f["total"]), "server": p(f["server"]), "server_planning": p(f["planning"]),
                     "client": p([t - s for t, s in zip(f["total"], f["server"])]),
                     "recall@10": round(float(np.mean(f["recall"])), 4)}
        x = out[name]
        print(f"{name:<7} total p50 {x['total']['p50_ms']:5.2f} / p99 {x['total']['p99_ms']:5.2f} ms | server p50 "
              f"{x['server']['p50_ms']:5.2f} / p99 {x['server']['p99_ms']:5.2f} (planning p50 "
              f"{x['server_planning']['p50_ms']:.3f}) | client p50 {x['client']['p50_ms']:5.2f} / p99 "
              f"{x['client']['p99_ms']:5.2f} | recall@10 {x['recall@10']:.3f}")
    for k in ("p50_ms", "p99_ms"):
        out[f"after_over_before_total_{k[:3]}"] = round(out["after"]["total"][k] / out["before"]["total"][k], 3)
    print(f"after / before: total p50 {out['after_over_before_total_p50']}x, p99 {out['after_over_before_total_p99']}x "
          f"({n_queries} queries each, interleaved, {chunks:,} chunks, ef_search {ef}, load {load0:.2f}-{load1:.2f})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--ef", type=int, default=100)
    a = ap.parse_args(argv)
    print(json.dumps(on_bench_server(main_async(a.chunks, a.queries, a.ef))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
