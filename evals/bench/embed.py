"""Embedding throughput on this machine (CPU torch), on the real chunks of evals/corpus.

    python -m evals.bench.embed [--batch-sizes 1,8,32,64] [--repeat 2]

Reports the model load time, chunks/s per batch size (the chunks exactly as ingestion embeds
them: context line + text, <= the model's max tokens) and single-query latency (what every
retrieval pays). The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

QUICK_ARGS = ["--threads", "1", "--queries", "10"]  # evals.bench.run_all --quick
CORPUS = Path(__file__).resolve().parents[1] / "corpus"
ANCHORS = {"notes_minilm_chunks_per_s_200": 15.7, "notes_onnx_int8_chunks_per_s": 10.7}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="embedding throughput")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--threads", default="1,2", help="torch thread counts to compare")
    ap.add_argument("--repeat", type=int, default=1, help="passes over the corpus chunks per configuration")
    ap.add_argument("--queries", type=int, default=30)
    a = ap.parse_args(argv)

    import torch

    from tools.chunking import chunk_document, parse_document
    from tools.embeddings import get_embedder

    emb = get_embedder()
    t = time.perf_counter()
    model = emb.load()
    load_s = time.perf_counter() - t
    count = emb.count_tokens_sync
    texts = []
    for f in sorted(CORPUS.glob("*.md")):
        doc = parse_document(f.read_text(), "markdown", fallback_title=f.stem)
        texts += [c.embed_text for c in chunk_document(doc, count, max_tokens=model.max_seq_length)]
    tokens = count(texts)
    print(f"model {emb.name}: {model.get_embedding_dimension()}-d, max {model.max_seq_length} tokens, loaded in "
          f"{load_s:.1f}s; torch {torch.__version__}, {os.cpu_count()} CPUs")
    print(f"corpus: {len(texts)} chunks, {statistics.mean(tokens):.0f} tokens mean, {max(tokens)} max")

    rows, queries = [], []
    for threads in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(threads)
        emb.embed_sync(texts[:8])  # warm-up
        for bs in [int(x) for x in a.batch_sizes.split(",")]:
            emb.batch_size = bs
            t = time.perf_counter()
            for _ in range(a.repeat):
                emb.embed_sync(texts)
            secs = time.perf_counter() - t
            n = len(texts) * a.repeat
            rows.append({"threads": threads, "batch_size": bs, "chunks": n, "seconds": round(secs, 2),
                         "chunks_per_s": round(n / secs, 1), "tokens_per_s": round(sum(tokens) * a.repeat / secs),
                         "loadavg_1m": round(os.getloadavg()[0], 2)})
            print(f"{threads} thread(s), batch {bs:>3}: {n} chunks in {secs:.1f}s = {n / secs:.1f} chunks/s "
                  f"({sum(tokens) * a.repeat / secs:,.0f} tokens/s; load average {os.getloadavg()[0]:.1f})", flush=True)
        q_lat = []
        for i in range(a.queries):
            t = time.perf_counter()
            emb.embed_sync([f"How does grouped-query attention shrink the KV cache? ({i})"])
            q_lat.append((time.perf_counter() - t) * 1000)
        q_lat.sort()
        queries.append({"threads": threads, "p50_ms": round(statistics.median(q_lat), 1),
                        "p99_ms": round(q_lat[int(0.99 * (len(q_lat) - 1))], 1)})
        print(f"{threads} thread(s), single query: p50 {queries[-1]['p50_ms']} ms, p99 {queries[-1]['p99_ms']} ms",
              flush=True)
    print(f"anchors (INTEGRATION-NOTES, same model on 2 cores): {ANCHORS['notes_minilm_chunks_per_s_200']} chunks/s "
          f"for 200 chunks; ONNX int8 route {ANCHORS['notes_onnx_int8_chunks_per_s']} chunks/s")
    out = {"bench": "embed", "model": emb.name, "dim": model.get_embedding_dimension(), "load_s": round(load_s, 2),
           "chunks": len(texts), "mean_tokens": round(statistics.mean(tokens)), "results": rows,
           "single_query": queries, "cpus": os.cpu_count(), "anchors": ANCHORS}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
