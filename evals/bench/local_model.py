"""Local model speed and memory: prompt and generation tokens/s, RSS, on the real llama.cpp server.

    python -m evals.bench.local_model [--model qwen2.5-coder-1.5b|smollm2] [--runs 2] [--max-tokens 200]

Per run, the production writer prompt (writer.draft@2) on notes from the sample corpus: one request
with max_tokens=1 (prefill time), then the full draft (prefill + decode); decode tokens/s =
(tokens_out - 1) / (full - prefill). Also: whether the draft cites a source the notes have, the
server's RSS (file-backed and anonymous), the 1-minute load average before and after (the machine
is shared). The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

QUICK_ARGS = ["--model", "smollm2", "--runs", "1", "--max-tokens", "64"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith(("Rss:", "Anonymous:")):
                out[line.split(":")[0].lower()] = int(line.split()[1]) // 1024
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from agents.models import ResearchNotes
    from agents.writer import draft_messages
    from evals.training.writer_eval import eval_items, score_draft
    from tools.local_llm import LocalLLMServer, ensure_weights

    ensure_weights(args.model, echo=print)
    load_before = os.getloadavg()[0]
    log = Path(tempfile.mkdtemp(prefix="bench-local-")) / "server.log"
    t0 = time.monotonic()
    server = LocalLLMServer(port=_free_port(), aliases=["newsroom-writer", "newsroom-judge"], threads=args.threads,
                            model=args.model, log_path=log).start(timeout_s=600)
    start_s = time.monotonic() - t0
    items = eval_items(args.runs) * (1 + args.runs // 8)
    runs = []
    try:
        for item in items[: args.runs]:
            msgs = draft_messages(item.topic, ResearchNotes(notes=item.notes, grounded=True))
            body = {"model": "newsroom-writer", "messages": msgs, "temperature": 0}
            t = time.monotonic()
            one = httpx.post(server.base_url + "/chat/completions", json={**body, "max_tokens": 1}, timeout=1800).json()
            prefill = time.monotonic() - t
            t = time.monotonic()
            full = httpx.post(server.base_url + "/chat/completions", json={**body, "max_tokens": args.max_tokens},
                              timeout=1800).json()
            total = time.monotonic() - t
            p_tok, g_tok = one["usage"]["prompt_tokens"], full["usage"]["completion_tokens"]
            text = full["choices"][0]["message"]["content"]
            run = {"item": item.id, "prompt_tokens": p_tok, "gen_tokens": g_tok, "prefill_s": round(prefill, 2),
                   "total_s": round(total, 2), "prompt_tok_s": round(p_tok / prefill, 1),
                   "gen_tok_s": round((g_tok - 1) / max(1e-3, total - prefill), 1),
                   "cited": score_draft(text, item)["cited"]}
            runs.append(run)
            print(json.dumps(run), flush=True)
        rss = _rss_mb(server.proc.pid)
    finally:
        server.stop()
    result = {"model": args.model, "threads": args.threads, "start_s": round(start_s, 1), "runs": len(runs),
              "prompt_tok_s_median": statistics.median(r["prompt_tok_s"] for r in runs),
              "gen_tok_s_median": statistics.median(r["gen_tok_s"] for r in runs),
              "cited": sum(r["cited"] for r in runs), "rss_mb": rss.get("rss"), "anon_mb": rss.get("anonymous"),
              "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
