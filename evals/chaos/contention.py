"""R2 contention: 4 and 16 concurrent writers on one post's shared state under SERIALIZABLE.

    python -m evals.chaos.contention [--writers 4 16] [--per-writer 25]

Two workloads per writer count, each on its own pooled connection per writer, on a private
embedded PostgreSQL (default_transaction_isolation = serializable; the pool pins SERIALIZABLE too):
  usage   every writer records LLM calls against the SAME post (record_llm_call: insert the call,
          then read-modify-write the post's running totals) -> lost updates = expected totals minus
          what the post holds (goal 0), and the per-call ledger must agree with the totals;
  status  every writer makes the same legal move on the SAME post at once, move after move
          (queued -> researching -> drafting -> editing) -> each move must be recorded once
          (idempotent transitions under contention: duplicate transition events, goal 0).
Retries (SQLSTATE 40001 serialization failures absorbed by Database.transaction) are counted.
The assertions live in tests/integration/test_storage_contention.py; this prints the figures.
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from decimal import Decimal

from evals.chaos.support import private_postgres

BUDGET = 30  # attempts per transaction (tests/integration/test_storage_contention.py explains the number)


def _call(w: int, i: int) -> tuple[int, int, Decimal]:
    # Distinct per call, so any lost update shows in the sums.
    return 1000 * w + i + 1, 7 * w + 3 * i + 1, Decimal(f"0.{w:02d}{i:03d}1")


async def _race(db, writers: int, op) -> float:
    gate = asyncio.Event()

    async def one(w: int) -> None:
        await gate.wait()
        await op(w)

    tasks = [asyncio.create_task(one(w)) for w in range(writers)]
    t0 = time.perf_counter()
    gate.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - t0


async def usage_workload(db, writers: int, per_writer: int) -> dict:
    from storage import posts

    tid = f"contend-usage-{writers}-{uuid.uuid4().hex[:8]}"
    await posts.create_post(db, tid, "contention", "bench")
    before = (db.stats.retries, db.stats.by_sqlstate.get("40001", 0), db.stats.commits)

    async def op(w: int) -> None:
        for i in range(per_writer):
            t_in, t_out, cost = _call(w, i)
            await posts.record_llm_call(db, thread_id=tid, role="writer", provider="llamacpp", endpoint="local",
                                        model="m", tokens_in=t_in, tokens_out=t_out, cost_usd=float(cost),
                                        latency_ms=i, outcome="ok")

    elapsed = await _race(db, writers, op)
    calls = [_call(w, i) for w in range(writers) for i in range(per_writer)]
    post = await posts.get_post(db, tid)
    ledger = await posts.usage_for(db, tid)
    expected = len(calls)
    return {
        "writers": writers, "updates": expected, "seconds": round(elapsed, 2),
        "lost_updates": expected - int(post["llm_calls"]),
        "lost_tokens": sum(c[0] for c in calls) - int(post["tokens_in"]),
        "ledger_mismatch": int(ledger["calls"]) != int(post["llm_calls"]) or int(ledger["tokens_in"]) != int(post["tokens_in"]),
        "retries": db.stats.retries - before[0], "serialization_failures": db.stats.by_sqlstate.get("40001", 0) - before[1],
        "commits_per_s": round((db.stats.commits - before[2]) / elapsed, 1),
    }


async def status_workload(db, writers: int) -> dict:
    from storage import posts

    tid = f"contend-status-{writers}-{uuid.uuid4().hex[:8]}"
    await posts.create_post(db, tid, "contention", "bench")
    retries_before = db.stats.retries
    path = ["researching", "drafting", "editing"]

    elapsed = 0.0
    for status in path:  # every writer makes the same move at once, then the next move
        async def op(w: int, status: str = status) -> None:
            await posts.transition(db, tid, status, actor=f"writer-{w}")

        elapsed += await _race(db, writers, op)
    moves = [e for e in await posts.list_events(db, tid) if e["kind"] == "transition"]
    return {
        "writers": writers, "seconds": round(elapsed, 2), "transitions_recorded": len(moves),
        "duplicate_transition_events": len(moves) - len(path),
        "final_status": (await posts.get_post(db, tid))["status"], "retries": db.stats.retries - retries_before,
    }


async def run(writer_counts: list[int], per_writer: int) -> dict:
    from config import load_settings
    from storage.db import Database
    from storage.migrate import migrate

    results = []
    with private_postgres() as (url, _):
        for writers in writer_counts:
            s = load_settings(database_url=url, pool_min_size=writers, pool_max_size=writers + 4, tx_max_attempts=BUDGET)
            async with Database(url, s, name=f"contention-{writers}") as db:
                await migrate(db)
                usage = await usage_workload(db, writers, per_writer)
                status = await status_workload(db, writers)
                results.append({"writers": writers, "usage": usage, "status": status,
                                "max_attempts": db.stats.max_attempts, "exhausted": db.stats.exhausted})
                print(f"{writers:>2} writers: {usage['updates']} usage updates in {usage['seconds']}s, lost "
                      f"{usage['lost_updates']}, {usage['retries']} retries ({usage['serialization_failures']} x 40001), "
                      f"max {db.stats.max_attempts} attempts; status race: {status['transitions_recorded']} "
                      f"transitions recorded (duplicates {status['duplicate_transition_events']}), "
                      f"{status['retries']} retries", flush=True)
    return {
        "lost_updates": sum(r["usage"]["lost_updates"] for r in results),
        "duplicate_transition_events": sum(r["status"]["duplicate_transition_events"] for r in results),
        "retries": {str(r["writers"]): r["usage"]["retries"] + r["status"]["retries"] for r in results},
        "exhausted": sum(r["exhausted"] for r in results),
        "per_writers": results,
    }


QUICK_ARGS = ["--per-writer", "10"]  # evals.bench.run_all --quick


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="R2 contention under SERIALIZABLE")
    ap.add_argument("--writers", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--per-writer", type=int, default=25)
    args = ap.parse_args(argv)
    figures = asyncio.run(run(args.writers, args.per_writer))
    print(json.dumps(figures, default=str))
    return 0 if figures["lost_updates"] == 0 and figures["duplicate_transition_events"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
