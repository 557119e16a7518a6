"""Retrieval eval: hit@5, top-1 and MRR on evals/retrieval/queries.jsonl for several modes.

    python -m evals.retrieval.run [--modes baseline,hyde,hybrid,hyde+hybrid] [--hypotheses FILE]
    newsroom eval-retrieval ...            (same options)

The corpus folder (default evals/corpus) is ingested first (a no-op when unchanged), and every
query is filtered to that folder (source_prefix), so other documents in the database do not
interfere. A query hits when any of its expected notes is in the top k (one chunk per note:
results are deduplicated per source); MRR uses the rank of the first expected note. For
cross-document queries "all@k" (every expected note in the top k) is printed too.

HyDE needs an LLM: the gateway's "hyde" role (the local SmolLM2 server by default, started here
if the settings point at it and nothing answers). --hypotheses FILE caches the generated
hypotheses (JSONL: id, model, hypothesis) so a run can be repeated, or measured with
hypotheses written by another model. The last line printed is one JSON object.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_QUERIES = HERE / "queries.jsonl"
DEFAULT_CORPUS = HERE.parent / "corpus"
MODES = {
    "baseline": {"hyde": False, "hybrid": False},
    "hyde": {"hyde": True, "hybrid": False},
    "hybrid": {"hyde": False, "hybrid": True},
    "hyde+hybrid": {"hyde": True, "hybrid": True},
}


@dataclass
class Query:
    id: str
    type: str
    query: str
    expected: list[str]


def load_queries(path: Path = DEFAULT_QUERIES) -> list[Query]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(Query(d["id"], d["type"], d["query"], list(d["expected"])))
    return out


def note_of(source_path: str) -> str:
    return Path(source_path).stem


def score(ranked: list[str], expected: list[str], k: int) -> dict:
    top = ranked[:k]
    rank = next((i for i, n in enumerate(ranked, 1) if n in expected), None)
    return {"hit": any(n in expected for n in top), "top1": bool(top) and top[0] in expected,
            "rr": (1.0 / rank) if rank and rank <= k else 0.0,
            "all": all(e in top for e in expected)}


def summarise(rows: list[dict]) -> dict:
    n = len(rows) or 1
    return {"n": len(rows), "hit@k": sum(r["hit"] for r in rows) / n, "top1": sum(r["top1"] for r in rows) / n,
            "mrr": sum(r["rr"] for r in rows) / n, "all@k": sum(r["all"] for r in rows) / n}


class HypothesisCache:
    """JSONL cache of HyDE hypotheses keyed by query id (and model label)."""

    def __init__(self, path: Path | None, generate, label: str):
        self.path, self.generate, self.label = path, generate, label
        self.data: dict[str, str] = {}
        self.generated = 0
        self.failed = 0
        self.seconds: list[float] = []
        if path and path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    d = json.loads(line)
                    self.data[d["query"]] = d["hypothesis"]

    async def __call__(self, query: str, thread_id: str | None) -> str:
        if query in self.data:
            return self.data[query]
        t = time.perf_counter()
        try:
            text = await self.generate(query, thread_id)
        except Exception:
            self.failed += 1
            raise
        self.seconds.append(time.perf_counter() - t)
        self.generated += 1
        self.data[query] = text
        if self.path:
            with self.path.open("a") as f:
                f.write(json.dumps({"query": query, "model": self.label, "hypothesis": text}) + "\n")
        return text


async def run_eval(*, corpus: Path = DEFAULT_CORPUS, queries_path: Path = DEFAULT_QUERIES,
                   modes: list[str] | None = None, k: int = 5, hypotheses: Path | None = None,
                   hyde_combine: str = "sum", db=None, embedder=None, generate=None,
                   echo=print) -> dict:
    from config import get_settings
    from tools.ingest import ingest_paths, source_path_for
    from tools.retrieval import Retriever, gateway_hyde

    settings = get_settings()
    modes = modes or list(MODES)
    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown mode {m!r} (one of {', '.join(MODES)})")
    queries = load_queries(queries_path)
    report = await ingest_paths([corpus], db=db, embedder=embedder)
    echo(f"corpus: {report.summary()}")
    prefix = source_path_for(Path(corpus)).rstrip("/") + "/"
    label = f"{settings.llm_provider}:{settings.hyde_model or settings.writer_model}@{settings.llm_base_url}"
    cache = HypothesisCache(hypotheses, generate or gateway_hyde, label)
    retriever = Retriever(db=db, embedder=embedder, hyde_generate=cache, hyde_combine=hyde_combine)

    results: dict[str, dict] = {}
    per_query: dict[str, list[dict]] = {}
    for mode in modes:
        opts = MODES[mode]
        rows, latencies, hyde_errors = [], [], 0
        for qy in queries:
            t = time.perf_counter()
            got = await retriever.retrieve(qy.query, k=k, filters={"source_prefix": prefix}, **opts)
            latencies.append((time.perf_counter() - t) * 1000)
            if retriever.last.hyde_error:
                hyde_errors += 1
            ranked = [note_of(c.source_path) for c in got]
            row = {"id": qy.id, "type": qy.type, **score(ranked, qy.expected, k), "ranked": ranked}
            rows.append(row)
        by_type = defaultdict(list)
        for r in rows:
            by_type[r["type"]].append(r)
        results[mode] = {"overall": summarise(rows), "by_type": {t: summarise(v) for t, v in sorted(by_type.items())},
                         "latency_ms_p50": statistics.median(latencies), "hyde_errors": hyde_errors}
        per_query[mode] = rows

    max_tokens = report.max_tokens or min(settings.chunk_max_tokens or 10**9, await retriever.embedder.max_tokens())
    echo(f"\n{len(queries)} queries, k={k}, embedder={report.embed_model}, chunks <= {max_tokens} tokens")
    if any(MODES[m]["hyde"] for m in modes):
        gen_s = f", {statistics.median(cache.seconds):.2f}s median" if cache.seconds else ""
        echo(f"HyDE hypotheses: {label} ({cache.generated} generated{gen_s}, {len(cache.data)} cached"
             f"{f', {cache.failed} FAILED: those queries fell back to the plain query' if cache.failed else ''};"
             f" combine={hyde_combine})")
    echo(f"{'mode':<13}{'hit@' + str(k):>8}{'top-1':>8}{'MRR':>8}{'p50 ms':>9}   by type (hit/top-1)")
    for mode in modes:
        o = results[mode]["overall"]
        types = "  ".join(f"{t[:5]} {v['hit@k']:.2f}/{v['top1']:.2f}" for t, v in results[mode]["by_type"].items())
        echo(f"{mode:<13}{o['hit@k']:>8.3f}{o['top1']:>8.3f}{o['mrr']:>8.3f}{results[mode]['latency_ms_p50']:>9.1f}   {types}")
    echo("seed anchors (10 queries, MPNet, fixed 400-word chunks): baseline hit 0.85 / top-1 0.80; "
         "HyDE (Claude Haiku) 1.00 / 0.90; rerank 0.85 / 0.60")
    misses = {m: [r["id"] for r in per_query[m] if not r["top1"]] for m in modes}
    echo("not top-1: " + "; ".join(f"{m}: {', '.join(v) or '-'}" for m, v in misses.items()))
    summary = {"queries": len(queries), "k": k, "embed_model": report.embed_model, "hyde_model": label,
               "hyde_combine": hyde_combine,
               **{m: {"hit@5" if k == 5 else f"hit@{k}": round(results[m]["overall"]["hit@k"], 4),
                      "top1": round(results[m]["overall"]["top1"], 4), "mrr": round(results[m]["overall"]["mrr"], 4),
                      "hyde_errors": results[m]["hyde_errors"]} for m in modes}}
    return {"summary": summary, "results": results, "per_query": per_query}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--hypotheses", type=Path, default=None)
    ap.add_argument("--hyde-combine", choices=["sum", "hypothesis"], default="sum")
    a = ap.parse_args(argv)
    out = asyncio.run(run_with_llm(corpus=a.corpus, queries_path=a.queries, modes=a.modes.split(","), k=a.k,
                                   hypotheses=a.hypotheses, hyde_combine=a.hyde_combine))
    print(json.dumps(out["summary"]))
    return 0


async def run_with_llm(**kw) -> dict:
    """run_eval, with the local LLM server started for HyDE when the settings point at it."""
    from config import get_settings
    from tools.local_llm import local_llm_if_needed

    modes = kw.get("modes") or list(MODES)
    needs_llm = any(MODES.get(m, {}).get("hyde") for m in modes)
    if not needs_llm:
        return await run_eval(**kw)
    try:
        cm = local_llm_if_needed(get_settings())
        cm.__enter__()
    except Exception as e:  # no local server possible: HyDE falls back per query, and says so
        print(f"warning: could not start the local LLM for HyDE ({e})", file=sys.stderr)
        return await run_eval(**kw)
    try:
        return await run_eval(**kw)
    finally:
        cm.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
