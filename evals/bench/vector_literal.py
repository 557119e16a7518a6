"""How the query vector is sent, side by side in one run:

    python -m evals.bench.vector_literal [--chunks 100000] [--queries 300] [--rounds 3]

The production form on PostgreSQL (a numpy array, sent in pgvector's binary form:
storage.db.UntypedVectorDumper) against the text literals it replaced: storage.corpus.vector_literal
(9 significant digits, every float32 exactly; still CockroachDB's form) and each value's double
repr (60% longer), through the production search path (CorpusStore.vector_search, HNSW
ef_search 100) on the same index and queries, the forms interleaved query by query (the order
rotated every round) so machine noise hits them alike. Prints p50/p99 of each and their ratios to
the production form; the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import timeit

import numpy as np

from evals.bench.vector_search import DIM, MODEL, indexed_synthetic_corpus, pct

QUICK_ARGS = ["--chunks", "10000", "--queries", "100", "--rounds", "1"]  # evals.bench.run_all --quick


def repr_literal(vec) -> str:
    """The replaced form: each float32 printed as the double it widens to."""
    arr = np.asarray(vec, dtype=np.float32).ravel()
    return "[" + ",".join(repr(float(x)) for x in arr) + "]"


async def main_async(chunks: int, n_queries: int, rounds: int) -> dict:
    from storage import bench as sb
    from storage import corpus

    current = corpus.vector_literal
    rng = np.random.default_rng(12)
    db = await sb.scratch_database("newsroom_bench_vec_literal")
    try:
        store = corpus.CorpusStore(db)
        binary = store._query_vector
        forms = {"binary": binary, "nine_digits": current, "double_repr": repr_literal}
        _, queries, *_ = await indexed_synthetic_corpus(db, store, chunks, n_queries, rng)
        exact = np.array([float(x) for x in current(queries[0])[1:-1].split(",")], dtype=np.float32)
        assert np.array_equal(exact, queries[0]), "the 9-digit form must give the float32 values back exactly"
        lat: dict[str, list[float]] = {name: [] for name in forms}
        for q in queries[:20]:  # warm the cache and the plan
            await store.vector_search(q, embed_model=MODEL, dim=DIM, limit=10)
        for rnd in range(rounds):
            names = list(forms)
            order = [(n, forms[n]) for n in names[rnd % len(names):] + names[:rnd % len(names)]]
            for q in queries:
                for name, form in order:
                    store._query_vector = form  # the parameter the search sends
                    t = time.perf_counter()
                    await store.vector_search(q, embed_model=MODEL, dim=DIM, limit=10, ef_search=100)
                    lat[name].append((time.perf_counter() - t) * 1000)
    finally:
        await sb.drop_scratch_database(db)
    build_us = {name: timeit.timeit(lambda f=form: f(queries[0]), number=2000) / 2000 * 1e6 for name, form in forms.items()}
    out = {"bench": "vector_literal", "chunks": chunks, "queries": n_queries * rounds}
    for name, form in forms.items():
        param = form(queries[0])
        size = 4 + 4 * len(param) if isinstance(param, np.ndarray) else len(param)
        out[name] = {"p50_ms": round(statistics.median(lat[name]), 3), "p99_ms": round(pct(lat[name], 99), 3),
                     "build_us": round(build_us[name], 1), "bytes": size}
        print(f"{name:<12} p50 {out[name]['p50_ms']:.2f} ms  p99 {out[name]['p99_ms']:.2f} ms  "
              f"parameter built in {out[name]['build_us']:.0f} us (binary: dumped later by psycopg), {size} bytes")
    for old in ("nine_digits", "double_repr"):
        out[f"binary_over_{old}_p50"] = round(out["binary"]["p50_ms"] / out[old]["p50_ms"], 3)
        out[f"binary_over_{old}_p99"] = round(out["binary"]["p99_ms"] / out[old]["p99_ms"], 3)
        print(f"binary / {old}: p50 {out[f'binary_over_{old}_p50']}, p99 {out[f'binary_over_{old}_p99']} "
              f"({out['queries']} queries each)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args.chunks, args.queries, args.rounds))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
