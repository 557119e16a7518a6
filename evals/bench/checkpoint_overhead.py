"""P1 checkpoint overhead: the same graph with InMemorySaver and with our PostgreSQL checkpointer.

    python -m evals.bench.checkpoint_overhead [--posts 200] [--block 10] [--keep 1 3]

Zero-latency scripted LLM over real HTTP (tests/scripted_llm.py), a private embedded PostgreSQL
(SERIALIZABLE), approval policy "human": each post runs to the approval interrupt, then is resumed
with "approve" and published. Both sides do the same database work (posts state machine, events,
llm_calls, publication ledger); only the checkpointer differs. Posts run one after another; the
two savers alternate in blocks (ABBA order) so machine load hits both alike.
Figures: seconds per post on each side, the ratio postgres / in-memory (goal <= 1.3), checkpoint
rows and bytes per post, and `newsroom prune --keep N` (storage.maintenance.keep_last_checkpoints)
applied to the finished threads: rows and bytes per post after, and the seconds it took.
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

from evals.chaos.support import private_postgres, use_scripted_llm


async def _approval(graph, config) -> dict:
    """The approve a human would give, through the approvals ledger (the gate accepts no other)."""
    from service.decisions import PendingInterrupt, claim_interrupt, resume_value
    from service.runner import latest_interrupt
    from storage.connect import get_database

    value, interrupt_id = latest_interrupt(await graph.aget_state(config))
    pending = PendingInterrupt(thread_id=config["configurable"]["thread_id"], interrupt_id=interrupt_id, payload=value)
    _, token = await claim_interrupt(await get_database(), pending, action="approve", text=None, reviewer="bench",
                                     via="bench")
    return resume_value("approve", None, "bench", token)


async def _one_post(graph, tid: str) -> float:
    from langgraph.types import Command

    config = {"configurable": {"thread_id": tid}, "recursion_limit": 100}
    t0 = time.perf_counter()
    await graph.ainvoke({"topic": "How GQA shrinks the KV cache", "requester": "bench", "source": "api"}, config)
    final = await graph.ainvoke(Command(resume=await _approval(graph, config)), config)
    elapsed = time.perf_counter() - t0
    if final.get("outcome") != "published":
        raise RuntimeError(f"{tid} ended {final.get('outcome')}: {final.get('error')}")
    return elapsed


async def run(n_posts: int, block: int, keeps: list[int], warmup: int = 4) -> dict:
    from langgraph.checkpoint.memory import InMemorySaver

    from graphs.engine import build_graph
    from service.cli.maintenance import prune_finished
    from storage import maintenance
    from storage.checkpointer import checkpointer, make_serde
    from storage.connect import close_database, get_database
    from tests.engine_fixtures import JUDGE, PASSING, WRITER, draft_reply
    from tests.scripted_llm import ScriptedLLM

    with private_postgres() as _, ScriptedLLM(models=[WRITER, JUDGE]) as llm:
        use_scripted_llm(llm)
        llm.on_chat(draft_reply, model=WRITER)
        llm.on_chat(lambda req: PASSING, model=JUDGE)
        try:
            db = await get_database()
            async with checkpointer() as pg_saver:
                # The same serializer on both sides (our msgpack allowlist), so only storage differs.
                graphs = {"memory": build_graph().compile(checkpointer=InMemorySaver(serde=make_serde())),
                          "postgres": build_graph().compile(checkpointer=pg_saver)}
                for name, g in graphs.items():  # warm both paths (imports, pools, prepared plans)
                    for _ in range(warmup):
                        await _one_post(g, f"warm-{name}-{uuid.uuid4().hex[:8]}")
                times: dict[str, list[float]] = {"memory": [], "postgres": []}
                pg_threads: list[str] = []
                order = ["memory", "postgres", "postgres", "memory"]
                i = 0
                while min(len(v) for v in times.values()) < n_posts:
                    side = order[i % len(order)]
                    i += 1
                    for _ in range(min(block, n_posts - len(times[side]))):
                        tid = f"p1-{side}-{uuid.uuid4().hex[:10]}"
                        times[side].append(await _one_post(graphs[side], tid))
                        if side == "postgres":
                            pg_threads.append(tid)
                footprint = await maintenance.checkpoint_footprint(db, pg_threads)
                retention = []
                for keep in sorted(keeps, reverse=True):  # 3 then 1: each step prunes further
                    r = await prune_finished(keep=keep, min_age_s=0, thread_ids=pg_threads)
                    after = maintenance.Footprint(**r.after)
                    retention.append({"keep": keep, "seconds": r.seconds, "threads": r.threads,
                                      "pruned_checkpoints": r.pruned_checkpoints,
                                      "per_post_after": {k: round(v, 1) for k, v in after.per_thread().items()}})
                # A pruned thread still loads: its latest state is intact.
                state = await graphs["postgres"].aget_state({"configurable": {"thread_id": pg_threads[0]}})
                assert state.values["outcome"] == "published" and not state.next
        finally:
            await close_database()
    mem, pg = statistics.mean(times["memory"]), statistics.mean(times["postgres"])
    return {
        "posts_per_side": n_posts,
        "memory_s_per_post": round(mem, 4), "postgres_s_per_post": round(pg, 4),
        "memory_median_s": round(statistics.median(times["memory"]), 4),
        "postgres_median_s": round(statistics.median(times["postgres"]), 4),
        "ratio": round(pg / mem, 3), "ratio_median": round(statistics.median(times["postgres"]) /
                                                           statistics.median(times["memory"]), 3),
        "goal_ratio": 1.3,
        "checkpoint_per_post": {k: round(v, 1) for k, v in footprint.per_thread().items()},
        "retention": retention,
    }


QUICK_ARGS = ["--posts", "30"]  # evals.bench.run_all --quick


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="P1 checkpoint overhead")
    ap.add_argument("--posts", type=int, default=200)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--keep", type=int, nargs="+", default=[3, 1])
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    f = asyncio.run(run(args.posts, args.block, args.keep))
    cp = f["checkpoint_per_post"]
    print(f"{f['posts_per_side']} posts per side: in-memory {f['memory_s_per_post']*1000:.0f} ms/post, postgres "
          f"{f['postgres_s_per_post']*1000:.0f} ms/post, ratio {f['ratio']} (median {f['ratio_median']}; goal <= 1.3); "
          f"checkpoints per post: {cp['checkpoints']:.0f} rows, {cp['writes']:.0f} writes, {cp['blobs']:.0f} blobs, "
          f"{cp['bytes']/1024:.1f} KiB")
    for r in f["retention"]:
        a = r["per_post_after"]
        print(f"prune --keep {r['keep']}: {a['checkpoints']:.0f} checkpoints, {a['bytes']/1024:.1f} KiB per post after, "
              f"{r['seconds']:.2f}s for {r['threads']} threads")
    print(json.dumps(f))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
