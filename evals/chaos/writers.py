"""R2b contention between writers on DIFFERENT posts: N processes, each running post lifecycles of
its own, at once, on one database under SERIALIZABLE.

    python -m evals.chaos.writers [--processes 8] [--posts-per-process 60] [--attempts 30]

Every process drives its own posts through the storage writes a real post makes, in the graph's
order (storage/ calls only, no LLM): create the post (with run overrides), take the run lease,
then per desk the status move, the LLM call's row and usage, the desk's event; at the gate the
gate's registration, claim and token consumption and the human decision; then the publisher's
read of what may be published, the ledger row with the move to published, and the lease's
release. Writers that touch different posts share no row, so under SERIALIZABLE they should never
conflict; what they do conflict on is what PostgreSQL's predicate locks see (index pages, tables
read without an index), and that is what this drill counts:
  transitions            status moves made (goal: >= 1,000 in the full run)
  failures               operations that ran out of their attempt budget (goal 0)
  retries                serialization failures absorbed, per operation (printed, goal: few)
`--attempts N` sets the budget (a post whose operation runs out of it is abandoned and counted).
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICK_ARGS = ["--processes", "4", "--posts-per-process", "15"]

# The moves one post makes through the graph (one revision-free pass to publication).
DESK_STEPS = (("researching", "researcher", "research_done"), ("drafting", "writer", "draft_written"),
              ("editing", "judge", "verdict"))


# The supersteps of that pass, each ending in a checkpoint (what the supervisor graph saves).
GRAPH_STEPS = ("supervisor", "researcher", "supervisor", "writer", "supervisor", "editor", "supervisor",
               "prepare_approval", "human_approval", "human_approval", "supervisor", "publisher", "supervisor")


class Checkpoints:
    """A thread's checkpoints written the way the graph writes them (the task's writes, then the
    checkpoint), through the project's saver, with a draft-sized state."""

    def __init__(self, saver, tid: str):
        from langgraph.checkpoint.base import empty_checkpoint

        self.saver, self.config, self.step = saver, {"configurable": {"thread_id": tid, "checkpoint_ns": ""}}, -1
        self.checkpoint = empty_checkpoint()
        self.state = {"topic": "contention between posts", "drafts": [], "reviews": []}

    async def start(self) -> None:
        await self.saver.aget_tuple(self.config)

    async def after(self, node: str) -> None:
        from langgraph.checkpoint.base.id import uuid6

        self.step += 1
        if node == "writer":
            self.state["drafts"].append({"title": "t", "body": "lorem ipsum " * 200, "version": 1})
        if node == "editor":
            self.state["reviews"].append({"scores": {"technical_accuracy": 4}, "reasoning": "fine " * 50})
        if "checkpoint_id" in self.config["configurable"]:
            await self.saver.aput_writes(self.config, [(k, v) for k, v in self.state.items()], str(uuid6()))
        versions = {k: f"{self.step + 1:032}.0" for k in self.state}
        cp = dict(self.checkpoint, id=str(uuid6(clock_seq=self.step)), channel_values=dict(self.state),
                  channel_versions=versions)
        self.config = await self.saver.aput(self.config, cp, {"source": "loop", "step": self.step, "parents": {}},
                                            versions)


async def _lifecycle(db, tid: str, ops: OpCounter, saver=None) -> int:
    """One post's storage writes, in the graph's order. Returns the status moves it made."""
    from storage import approvals, maintenance, posts

    holder = maintenance.lease_holder("drill")
    cps = Checkpoints(saver, tid) if saver is not None else None
    step = iter(GRAPH_STEPS)

    async def checkpoint() -> None:
        if cps is not None:
            await ops.run("checkpoint", cps.after(next(step)))

    if cps is not None:
        await ops.run("checkpoint", cps.start())
    await ops.run("create_post", posts.create_post(db, tid, "contention between posts", "drill", source="drill",
                                                   metadata={"chat_id": 1}, run_overrides={"max_revisions": 3}))
    await ops.run("acquire_run_lease", maintenance.acquire_run_lease(db, tid, holder))
    await checkpoint()  # supervisor
    moves = 0
    for status, role, kind in DESK_STEPS:
        await ops.run("transition", posts.transition(db, tid, status, actor=role, revision=0))
        moves += 1
        await ops.run("record_llm_call", posts.record_llm_call(
            db, thread_id=tid, role=role, provider="scripted", endpoint="local", model="m", tokens_in=100,
            tokens_out=50, cost_usd=0.001, latency_ms=5, outcome="ok", call_id=f"{tid}:{role}"))
        await ops.run("record_event", posts.record_event(db, tid, actor=role, kind=kind, detail={"hash": "h1"}))
        await checkpoint()  # the desk
        await checkpoint()  # supervisor
    await ops.run("renew_run_lease", maintenance.renew_run_lease(db, tid, holder))
    await ops.run("transition", posts.transition(db, tid, "awaiting_approval", actor="editor", revision=0))
    moves += 1
    await checkpoint()  # prepare_approval
    await checkpoint()  # human_approval: the interrupt
    gate = await ops.run("register_gate", approvals.register_gate(db, thread_id=tid, interrupt_id=f"i-{tid}",
                                                                  draft_version=1, chat_id=1, draft_hash="h1"))
    if gate is not None:
        token = await ops.run("claim_gate", approvals.claim_gate(db, gate.gate_id, decision="approve",
                                                                 decided_by="drill", decided_via="drill"))
        await ops.run("consume_gate_token", approvals.consume_gate_token(db, tid, f"i-{tid}", token, "cp-1",
                                                                         draft_hash="h1"))
    await ops.run("record_human_decision", posts.record_human_decision(
        db, tid, reviewer="drill", decision="approve", payload_hash="p1", checkpoint_id="cp-1"))
    await checkpoint()  # human_approval: answered
    await checkpoint()  # supervisor
    await ops.run("transition", posts.transition(db, tid, "publishing", actor="publisher",
                                                 unless_in=("published",)))
    moves += 1
    # What the publisher reads before it publishes (graphs.ledger.publication_refused, publish_everywhere).
    await ops.run("publisher_reads", _publisher_reads(db, tid))
    ok = await ops.run("record_publication", posts.record_publication(
        db, publish_key=f"key-{tid}", thread_id=tid, destination="site", location=f"site/{tid}.html",
        draft_hash="h1", title="t"))
    moves += 1 if ok else 0
    await checkpoint()  # publisher
    await checkpoint()  # supervisor: finished
    await ops.run("release_run_lease", maintenance.release_run_lease(db, tid, holder))
    return moves


def time_ordered_id() -> str:
    """A UUIDv7-shaped id (48-bit millisecond clock, then random), like the Agent Server's thread
    ids: posts started together get neighbouring keys, on the same index pages (the worst case)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | (rand & ((1 << 76) - 1))
    value = (value & ~(0xC << 60)) | (0x8 << 60)  # RFC 4122 variant bits
    return str(uuid.UUID(int=value))


async def _publisher_reads(db, tid: str) -> None:
    from storage import approvals, posts

    await posts.list_events(db, tid)
    await approvals.approved_gates(db, tid)
    await posts.run_overrides_of(db, tid)
    await posts.get_publication(db, f"key-{tid}")


class PostAbandoned(Exception):
    """An operation ran out of its attempts: the rest of that post's lifecycle is skipped."""


class OpCounter:
    """Runs one storage call at a time and charges the retries it needed to its name."""

    def __init__(self, db):
        self.db, self.retries, self.failures, self.calls = db, Counter(), Counter(), Counter()
        self.errors: list[str] = []

    def _retries_so_far(self) -> int:
        from storage import checkpointer

        return self.db.stats.retries + sum(getattr(checkpointer, "SAVER_RETRIES", {}).values())

    async def run(self, name: str, call):
        import psycopg

        from storage.db import TransactionRetryExhausted

        before = self._retries_so_far()
        self.calls[name] += 1
        try:
            return await call
        except (TransactionRetryExhausted, psycopg.Error) as err:  # the saver re-raises its last error
            self.failures[name] += 1
            if len(self.errors) < 5:
                self.errors.append(f"{name}: {type(err).__name__} {str(err)[:300]}")
            raise PostAbandoned(name) from err
        finally:
            self.retries[name] += self._retries_so_far() - before


async def _worker(url: str, go_file: str, posts_per_process: int, attempts: int, checkpoints: bool) -> dict:
    from config import load_settings
    from storage.checkpointer import _saver_pool, make_saver
    from storage.db import Database

    s = load_settings(database_url=url, pool_min_size=1, pool_max_size=2, tx_max_attempts=attempts)
    async with Database(url, s, name=f"writer-{os.getpid()}") as db, _saver_pool(url, s) as pool:
        saver = make_saver(pool, db.dialect) if checkpoints else None
        ops = OpCounter(db)
        print("READY", flush=True)
        while not Path(go_file).exists():  # start barrier: every process connected and waiting
            await asyncio.sleep(0.005)
        t0 = time.perf_counter()
        moves = 0
        abandoned = 0
        for i in range(posts_per_process):
            try:
                moves += await _lifecycle(db, time_ordered_id(), ops, saver)
            except PostAbandoned:
                abandoned += 1
        return {"pid": os.getpid(), "seconds": time.perf_counter() - t0, "transitions": moves, "abandoned": abandoned,
                "commits": db.stats.commits, "retries": dict(ops.retries), "failures": dict(ops.failures),
                "calls": dict(ops.calls), "max_attempts": db.stats.max_attempts, "errors": ops.errors}


async def prepare_schema(url: str) -> None:
    """Our migrations and the saver's tables (what `newsroom db migrate` and a first run do)."""
    from config import load_settings
    from storage.checkpointer import checkpointer

    async with checkpointer(load_settings(database_url=url)):
        pass


def run_processes(url: str, processes: int, posts_per_process: int, attempts: int, *, checkpoints: bool = True,
                  timeout: float = 900) -> dict:
    """Start `processes` workers on `url`, release them at once, collect their figures."""
    go_file = Path(tempfile.mkdtemp(prefix="newsroom-writers-")) / "go"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    procs = [subprocess.Popen([sys.executable, "-m", "evals.chaos.writers", "--worker", url, str(go_file),
                               str(posts_per_process), str(attempts), "1" if checkpoints else "0"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
             for _ in range(processes)]
    try:
        for p in procs:  # each says READY once connected
            line = p.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"writer did not start: {line!r} {p.stderr.read()[-2000:]}")
        t0 = time.perf_counter()
        go_file.touch()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            last = out.strip().splitlines()[-1] if out.strip() else ""
            if p.returncode != 0 or not last.startswith("{"):
                raise RuntimeError(f"writer {p.pid} failed (rc {p.returncode}): {err[-2000:]}")
            results.append(json.loads(last))
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    retries, failures, calls = Counter(), Counter(), Counter()
    for r in results:
        retries.update(r["retries"])
        failures.update(r["failures"])
        calls.update(r["calls"])
    return {"processes": processes, "posts": processes * posts_per_process, "attempt_budget": attempts,
            "checkpoints": checkpoints,
            "transitions": sum(r["transitions"] for r in results), "transactions": sum(r["commits"] for r in results),
            "failures": sum(failures.values()),
            "posts_abandoned": sum(r["abandoned"] for r in results), "retries": sum(retries.values()),
            "max_attempts": max(r["max_attempts"] for r in results), "seconds": round(wall, 2),
            "retries_by_op": dict(retries), "failures_by_op": dict(failures), "calls_by_op": dict(calls),
            "errors": [e for r in results for e in r["errors"]][:5]}


def report(fig: dict) -> str:
    by_op = ", ".join(f"{k} {v}/{fig['calls_by_op'].get(k, 0)}" for k, v in sorted(fig["retries_by_op"].items()) if v)
    return (f"{fig['processes']} processes x {fig['posts'] // fig['processes']} posts: {fig['transitions']} transitions, "
            f"{fig['transactions']} transactions in {fig['seconds']} s; failures {fig['failures']} "
            f"(attempt budget {fig['attempt_budget']}); retries {fig['retries']}"
            f" (max {fig['max_attempts']} attempts){': ' + by_op if by_op else ''}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--worker":
        url, go_file, n, attempts, checkpoints = argv[1:6]
        print(json.dumps(asyncio.run(_worker(url, go_file, int(n), int(attempts), checkpoints == "1"))), flush=True)
        return 0
    ap = argparse.ArgumentParser(description="R2b: concurrent writers on different posts under SERIALIZABLE")
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--posts-per-process", type=int, default=60)
    ap.add_argument("--attempts", type=int, default=30, help="attempt budget per transaction")
    ap.add_argument("--no-checkpoints", action="store_true", help="leave out the checkpoint saver's writes")
    args = ap.parse_args(argv)
    from evals.chaos.support import private_postgres

    with private_postgres() as (url, _):
        asyncio.run(prepare_schema(url))
        fig = run_processes(url, args.processes, args.posts_per_process, args.attempts,
                            checkpoints=not args.no_checkpoints)
    fig["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(report(fig) + f"; load average {fig['load_average'][0]}")
    print(json.dumps(fig))
    return 0 if fig["failures"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
