"""R1 crash and resume: SIGKILL the serving process at random points; restart; recover; finish.

    python -m evals.chaos.crash_resume [--posts 20] [--kills 12] [--seed 1] [--deadline 600]

Setup: a private embedded PostgreSQL (temp data dir), the scripted LLM over real HTTP (tests/
scripted_llm.py: researcher and writer 0.25 s, judge 0.2 s per call, verdicts pass), and the
serving process = evals/chaos/worker.py, a worker subprocess running service.runner in-process
(simpler and more deterministic than the Agent Server, whose in-memory run queue does not survive
a SIGKILL anyway). It runs the recovery pass (`newsroom recover`'s function) every time it starts.

This process plays the users: it submits the posts (rows in the posts table, as an intake would),
and a "human" approves every draft that reaches the gate, 0-0.8 s after it arrives, by claiming
the decision in the approval ledger (as the Telegram and web channels do). Meanwhile it kills the
worker (SIGKILL to its process group) --kills times, each aimed at one kind of point, in turn:
  desk      a post entered researching/drafting/editing since the restart (an LLM call in flight)
  approval  a post waits at the gate (often with its approval claimed but not yet applied)
  publish   a post entered publishing since the restart (the destination sleeps around its write)
  random    any moment 0-2 s after the worker is serving again
then restarts it at once. After the last kill it lets the worker finish.

Figures: finished/started (goal 20/20), duplicate publications (ledger rows and site files beyond
one per post; goal 0), lost approvals (claimed approvals whose post did not end published; goal
0), published without an approval (goal 0), restarts, runs resumed by recovery, seconds.
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESK_STATUSES = {"researching", "drafting", "editing"}
WAITING = {"awaiting_approval", "escalated"}
KILL_KINDS = ("desk", "approval", "publish", "random")


def _configure_env(state_dir: Path) -> tuple[str, object]:
    """Embedded PostgreSQL + scripted LLM for this drill; returns (database url, llm server)."""
    from storage.embedded import start_embedded
    from tests.engine_fixtures import JUDGE, PASSING, WRITER, writer_reply
    from tests.scripted_llm import Reply, ScriptedLLM

    url = start_embedded(state_dir / "pg", keep_running=True)
    llm = ScriptedLLM(models=[WRITER, JUDGE]).start()
    llm.on_chat(lambda req: writer_reply(req, delay_s=0.25), model=WRITER)
    llm.on_chat(lambda req: Reply.json(PASSING, delay_s=0.2), model=JUDGE)
    os.environ.update({
        "DATABASE_URL": url, "NEWSROOM_LLM_BASE_URL": llm.base_url, "NEWSROOM_LLM_PROVIDER": "llamacpp",
        "NEWSROOM_DATA_DIR": str(state_dir), "NEWSROOM_SITE_DIR": str(state_dir / "site"),
        "NEWSROOM_LOG_LEVEL": "WARNING", "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "1",
    })
    for secret in ("ANTHROPIC_API_KEY", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):
        os.environ.pop(secret, None)
    from config import reset_settings_cache

    reset_settings_cache()
    return url, llm


class WorkerProcess:
    def __init__(self, log_path: Path, jobs: int, publish_delay_s: float):
        self.log_path, self.jobs, self.publish_delay_s = log_path, jobs, publish_delay_s
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "evals.chaos.worker", "--jobs", str(self.jobs),
             "--publish-delay", str(self.publish_delay_s)],
            cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def ready(self) -> bool:
        """The current process has imported, connected and begun serving."""
        pid = self.proc.pid if self.proc else None
        return any(e["event"] == "ready" and e["pid"] == pid for e in self.events())

    def events(self) -> list[dict]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    pass
        return found


async def _statuses(db, tids: list[str]) -> dict[str, str]:
    from storage import posts

    return {r["thread_id"]: r["status"] for r in await posts.list_posts(db, limit=10_000) if r["thread_id"] in tids}


class Human:
    """Approves each draft that reaches the gate once, after a short think, via the approval ledger."""

    def __init__(self, db, graph, rng: random.Random):
        self.db, self.graph, self.rng = db, graph, rng
        self.seen_at: dict[tuple[str, str], float] = {}
        self.claimed: dict[str, list[str]] = {}  # thread -> interrupt ids approved

    async def step(self, statuses: dict[str, str]) -> None:
        from service.runner import snapshot
        from storage import approvals

        now = time.monotonic()
        for tid, status in statuses.items():
            if status not in WAITING:
                continue
            snap = await snapshot(self.graph, {"configurable": {"thread_id": tid}})
            if snap.interrupt_id is None or snap.interrupt_id in self.claimed.get(tid, []):
                continue
            key = (tid, snap.interrupt_id)
            think = self.seen_at.setdefault(key, now + self.rng.uniform(0.0, 0.8))
            if now < think:
                continue
            gate = await approvals.register_gate(self.db, thread_id=tid, interrupt_id=snap.interrupt_id,
                                                 draft_version=int(snap.interrupt["draft"]["version"]))
            if await approvals.claim_gate(self.db, gate.gate_id, decision="approve", decided_by="chaos-human",
                                          decided_via="chaos"):
                self.claimed.setdefault(tid, []).append(snap.interrupt_id)


def _site_files_per_thread(site_dir: Path) -> Counter:
    per_thread: Counter = Counter()
    for md in (site_dir / "posts").glob("*.md"):
        m = re.search(r'^thread_id: "(.*)"$', md.read_text(encoding="utf-8"), re.MULTILINE)
        if m:
            per_thread[m.group(1)] += 1
    return per_thread


async def drill(n_posts: int, n_kills: int, seed: int, deadline_s: float, jobs: int = 4,
                publish_delay_s: float = 0.15, state_dir: Path | None = None, echo=print) -> dict:
    state_dir = Path(state_dir or tempfile.mkdtemp(prefix="newsroom-chaos-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    _url, llm = _configure_env(state_dir)
    from graphs.engine import build_graph
    from storage import approvals, posts
    from storage.checkpointer import checkpointer
    from storage.connect import close_database, get_database
    from storage.embedded import stop_embedded

    rng = random.Random(seed)
    worker = WorkerProcess(state_dir / "worker.log", jobs, publish_delay_s)
    kills: list[dict] = []
    t_start = time.monotonic()
    try:
        db = await get_database()
        async with checkpointer() as saver:
            graph = build_graph().compile(checkpointer=saver)
            human = Human(db, graph, rng)
            tids = [f"chaos-{seed}-{i:03d}" for i in range(n_posts)]
            for i, tid in enumerate(tids):
                await posts.create_post(db, tid, f"Crash drill post {i}: how GQA shrinks the KV cache", "chaos",
                                        source="api")
            worker.start()
            next_kind = 0
            aim = KILL_KINDS[0]
            aim_since: float | None = None  # the aim clock starts once the worker serves
            deadline = t_start + deadline_s
            while time.monotonic() < deadline:
                statuses = await _statuses(db, tids)
                await human.step(statuses)
                if all(s == "published" for s in statuses.values()) and len(statuses) == n_posts:
                    break
                if len(kills) < n_kills and aim_since is None and worker.ready():
                    aim_since = time.monotonic()
                    random_at = aim_since + rng.uniform(0.0, 2.0)
                    at_ready = dict(statuses)
                if len(kills) < n_kills and aim_since is not None:
                    # A desk or publish step is in flight when a post ENTERED that status since the
                    # restart (a status left over from the last kill is a cut-off run, not work).
                    moved = Counter(s for t, s in statuses.items() if at_ready.get(t) != s)
                    hit = {"desk": any(moved[s] for s in DESK_STATUSES),
                           "approval": any(s in WAITING for s in statuses.values()),
                           "publish": moved["publishing"] > 0,
                           "random": time.monotonic() >= random_at}[aim]
                    # Aim for a while; if that point never comes (e.g. nothing left to publish), kill anyway.
                    if hit or time.monotonic() - aim_since > 8.0:
                        await asyncio.sleep(rng.uniform(0.0, 0.12))
                        at = await _statuses(db, tids)
                        worker.kill()
                        kills.append({"aim": aim, "hit": hit, "t": round(time.monotonic() - t_start, 2),
                                      "statuses": dict(Counter(at.values()))})
                        echo(f"kill {len(kills)}/{n_kills} aimed at {aim} ({'hit' if hit else 'timeout'}): "
                             f"{dict(Counter(at.values()))}")
                        worker.start()
                        next_kind += 1
                        aim = KILL_KINDS[next_kind % len(KILL_KINDS)]
                        aim_since = None
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - t_start
            worker.stop()

            statuses = await _statuses(db, tids)
            ledger = {tid: await posts.publications_for(db, tid) for tid in tids}
            files = _site_files_per_thread(state_dir / "site")
            gates = {tid: await approvals.gates_for_thread(db, tid) for tid in tids}
            approved = {tid for tid, gs in gates.items() if any(g.decision == "approve" for g in gs)}
            decisions = {tid: [e for e in await posts.list_events(db, tid) if e["kind"] == "human_decision"]
                         for tid in tids}
    finally:
        worker.kill()
        llm.close()
        await close_database()
        stop_embedded(state_dir / "pg")

    events = worker.events()
    recovered = [e for e in events if e["event"] == "recovered"]
    figures = {
        "started": n_posts,
        "finished": sum(1 for s in statuses.values() if s == "published"),
        "duplicate_publications": sum(max(0, len(rows) - 1) for rows in ledger.values()),
        "duplicate_site_files": sum(max(0, n - 1) for n in files.values()),
        "lost_approvals": sum(1 for tid in approved if statuses.get(tid) != "published"),
        "published_without_approval": sum(1 for tid, rows in ledger.items() if rows and tid not in approved),
        "decisions_recorded_twice": sum(1 for d in decisions.values() if len(d) > 1),
        "kills": len(kills),
        "kills_on_target": sum(1 for k in kills if k["hit"]),
        "kills_by_aim": dict(Counter(k["aim"] for k in kills)),
        "restarts": worker.starts - 1,
        "recovery_passes": len(recovered),
        "runs_resumed_by_recovery": sum(len(e["resumed"]) + len(e["started"]) for e in recovered),
        "approvals_redelivered_by_recovery": sum(len(e["redelivered"]) for e in recovered),
        "worker_errors": sum(1 for e in events if e["event"] == "error"),
        "final_statuses": dict(Counter(statuses.values())),
        "seconds": round(elapsed, 1),
        "seed": seed,
        "serving_process": "evals/chaos/worker.py (service.runner in-process, SIGKILL to its process group)",
    }
    return figures


QUICK_ARGS = ["--posts", "5", "--kills", "4", "--deadline", "300"]  # evals.bench.run_all --quick


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="R1 crash and resume drill")
    ap.add_argument("--posts", type=int, default=20)
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--deadline", type=float, default=600.0)
    ap.add_argument("--state-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    figures = asyncio.run(drill(args.posts, args.kills, args.seed, args.deadline, jobs=args.jobs,
                                state_dir=args.state_dir))
    print(f"finished {figures['finished']}/{figures['started']}, duplicate publications "
          f"{figures['duplicate_publications']} (site files {figures['duplicate_site_files']}), lost approvals "
          f"{figures['lost_approvals']}, {figures['kills']} kills ({figures['kills_on_target']} on target), "
          f"{figures['runs_resumed_by_recovery']} runs resumed by recovery, {figures['seconds']}s")
    print(json.dumps(figures))
    ok = (figures["finished"] == figures["started"] and figures["duplicate_publications"] == 0
          and figures["lost_approvals"] == 0 and figures["published_without_approval"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
