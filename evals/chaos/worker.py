"""The serving process of the crash drills: a worker that runs posts with service.runner in-process.

    python -m evals.chaos.worker [--jobs 4] [--publish-delay 0.15]

What a server does, reduced to its durable inputs, so a SIGKILL can land anywhere:
- on start, the recovery pass (service.recovery.recover, the same as `newsroom recover`),
  in the background while it serves;
- intake: a post accepted into the posts table (status queued, no checkpoint yet) is started;
- approvals: a decision a channel claimed in the approval ledger is applied to the thread
  waiting at that gate's interrupt (what the Agent Server does after a Telegram press).
Each thread is driven under its run lease and re-checked under it, so recovery and the intake
never drive one thread twice. One JSON line per event on stdout, for the drill's log.

--publish-delay makes the static-site destination slow (sleep before and after the file write)
so a kill can land inside the publish step, between the site write and the ledger commit.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time

from langgraph.types import Command

from service.decisions import resume_value
from service.recovery import recover, run_lease
from service.runner import current, drive
from storage import maintenance, posts
from storage.connect import get_database

NOT_A_BENCHMARK = True  # a helper process of crash_resume.py, not run on its own by run_all


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, "pid": os.getpid(), "t": round(time.time(), 3), **fields}), flush=True)


def slow_destination(delay_s: float) -> None:
    import tools.publish as publish_mod

    real = publish_mod.StaticSiteDestination.publish

    def publish(self, item):  # runs in a worker thread (asyncio.to_thread)
        time.sleep(delay_s)
        location = real(self, item)
        time.sleep(delay_s)  # written, ledger not yet committed: the window a replay must survive
        return location

    publish_mod.StaticSiteDestination.publish = publish


class Worker:
    def __init__(self, jobs: int, poll_s: float):
        self.limit = asyncio.Semaphore(jobs)
        self.poll_s = poll_s
        self.in_flight: set[str] = set()

    async def _start(self, db, row: dict) -> None:
        tid = row["thread_id"]
        async with self.limit, run_lease(db, tid, purpose="intake") as held:
            if not held:
                return
            snap = await current(tid)
            if snap.values or snap.next:  # it already started: a cut-off run is recovery's to resume
                return
            emit("start", thread_id=tid)
            snap = await drive(tid, {"topic": row["topic"], "requester": row["requester"], "source": row["source"]})
            emit("stopped", thread_id=tid, waiting=snap.waiting_for_human, outcome=snap.values.get("outcome"))

    async def _apply(self, db, gate: dict) -> None:
        tid = gate["thread_id"]
        async with self.limit, run_lease(db, tid, purpose="approval") as held:
            if not held:
                return
            snap = await current(tid)
            if snap.interrupt_id != gate["interrupt_id"]:
                # Applied already. If the run was cut off after the gate (outcome still pending, no
                # interrupt), carry it on; it is ours now that we hold the lease.
                if not snap.waiting_for_human and snap.values.get("outcome") == "pending":
                    emit("continue", thread_id=tid)
                    snap = await drive(tid, None)
                    emit("stopped", thread_id=tid, waiting=snap.waiting_for_human, outcome=snap.values.get("outcome"))
                return
            emit("apply", thread_id=tid, decision=gate["decision"])
            value = resume_value(gate["decision"], "chaos drill" if gate["decision"] == "reject" else None,
                                 gate["decided_by"] or "unknown", gate.get("resume_token"))
            snap = await drive(tid, Command(resume=value))
            emit("stopped", thread_id=tid, waiting=snap.waiting_for_human, outcome=snap.values.get("outcome"))

    def _spawn(self, tid: str, coro) -> None:
        if tid in self.in_flight:
            coro.close()
            return
        self.in_flight.add(tid)

        async def run():
            try:
                await coro
            except Exception as err:  # noqa: BLE001 - logged; the next poll or recovery retries
                emit("error", thread_id=tid, error=f"{type(err).__name__}: {err}"[:300])
            finally:
                self.in_flight.discard(tid)

        asyncio.create_task(run())

    async def serve(self) -> None:
        db = await get_database()

        async def recovery():
            t0 = time.monotonic()
            report = await recover(concurrency=4)
            emit("recovered", seconds=round(time.monotonic() - t0, 2), **report.as_dict())

        rec = asyncio.create_task(recovery())
        emit("ready")
        while True:
            for row in await posts.posts_in_status(db, ["queued"]):
                full = await posts.get_post(db, row["thread_id"])
                self._spawn(row["thread_id"], self._start(db, full))
            for gate in await maintenance.decided_gates_waiting(db):
                self._spawn(gate["thread_id"], self._apply(db, gate))
            if rec.done() and rec.exception():
                emit("error", thread_id=None, error=f"recovery: {rec.exception()!r}"[:300])
            await asyncio.sleep(self.poll_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--poll", type=float, default=0.1)
    ap.add_argument("--publish-delay", type=float, default=0.15)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.publish_delay > 0:
        slow_destination(args.publish_delay)
    asyncio.run(Worker(args.jobs, args.poll).serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
