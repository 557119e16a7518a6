"""Recovery: resume every run a crash cut off, from its last checkpoint.

What counts as cut off, per thread (the checkpoint decides, the posts table only nominates):
- the checkpoint has `next` nodes and no pending interrupt -> drive it on (drive(tid, None));
- it waits at the approval interrupt and a channel already claimed a human decision for exactly
  that interrupt in the approval ledger, but the resume never ran (the server died between the
  claim and the run) -> deliver that decision now, with the feedback or reason claimed with it:
  a lost approval is a bug, not a wait (only a revise claimed before the ledger kept its text is
  asked again);
- a post still `queued` with no checkpoint at all (accepted, never started) -> start it;
- otherwise (waiting for a human, finished) -> leave it alone.

Every resume runs with the overrides the run was started with (approval_policy, max_revisions,
...: config.run_config.RunConfig), kept with the post when it started.

Concurrency: each thread is driven under a run lease (storage/maintenance.py explains why the
publish ledger alone is not enough), renewed while it runs; a thread whose lease another live
process holds is skipped. So `newsroom recover` is idempotent and two recoverers may run at once.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph.types import Command

from config.run_config import run_overrides
from graphs.engine import build_graph
from service.decisions import resume_value
from service.engine import GRAPH_ID, LocalEngine, RunSnapshot, ServerEngine, latest_interrupt
from service.leases import run_lease
from storage import approvals, maintenance
from storage.checkpointer import checkpointer
from storage.connect import get_database
from storage.db import Database

log = logging.getLogger(__name__)

# Resume one thread: (thread_id, graph input | Command | None, the run's setting overrides for
# config["configurable"]) -> the snapshot it stopped at.
Driver = Callable[[str, Any, dict], Awaitable[RunSnapshot]]
ACTIONS = ("resumed", "started", "redelivered", "reasked", "waiting", "finished", "busy")


@dataclass
class RecoveryReport:
    examined: int = 0
    resumed: list[str] = field(default_factory=list)      # cut-off runs driven on from their checkpoint
    started: list[str] = field(default_factory=list)      # accepted posts that never started
    redelivered: list[str] = field(default_factory=list)  # human decisions claimed but never applied
    reasked: list[str] = field(default_factory=list)      # a claimed revise without its text: gate reopened
    waiting: list[str] = field(default_factory=list)      # waiting for a human: left alone
    finished: list[str] = field(default_factory=list)     # nothing to do
    busy: list[str] = field(default_factory=list)         # another live process holds the lease
    errors: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # thread -> outcome after this pass

    @property
    def acted(self) -> int:
        return len(self.resumed) + len(self.started) + len(self.redelivered) + len(self.reasked)

    def summary(self) -> str:
        parts = [f"examined {self.examined}"] + [f"{a} {len(getattr(self, a))}" for a in ACTIONS]
        return ", ".join(parts + [f"errors {len(self.errors)}"])

    def as_dict(self) -> dict:
        return {"examined": self.examined, **{a: list(getattr(self, a)) for a in ACTIONS},
                "errors": dict(self.errors), "outcomes": dict(self.outcomes)}


@dataclass(frozen=True)
class Plan:
    """What recovery would do with one thread (computed before acting, shown by --dry-run)."""

    thread_id: str
    action: str  # one of ACTIONS
    graph_input: Any = None
    detail: str = ""
    gate_id: str | None = None
    # The overrides the run was started with (approval_policy, max_revisions, ...), handed back in
    # config["configurable"]: without them a resumed run would fall back to the environment's.
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ThreadState:
    """What recovery needs from a thread's latest checkpoint."""

    values: dict
    pending: tuple[str, ...]  # tasks of the latest checkpoint: empty only when the graph has ended
    interrupt: Any = None
    interrupt_id: str | None = None


async def thread_state(graph, thread_id: str) -> ThreadState:
    state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
    interrupt, interrupt_id = latest_interrupt(state)
    # Not state.next: a task whose writes were saved but whose step's checkpoint was not (killed in
    # between) is dropped from `next`, though the graph has not moved on. Any task left means
    # "not finished"; drive(tid, None) applies the saved writes and carries on.
    return ThreadState(values=dict(state.values), pending=tuple(t.name for t in state.tasks),
                       interrupt=interrupt, interrupt_id=interrupt_id)


def _plan_for(cand: maintenance.RecoveryCandidate, st: ThreadState, gates: list[dict]) -> Plan:
    tid = cand.thread_id
    overrides = run_overrides(cand.run_overrides)  # whitelisted again: the row is only data
    if st.interrupt is not None:
        claimed = [g for g in gates if g["interrupt_id"] == st.interrupt_id]
        if not claimed:
            return Plan(tid, "waiting", detail="waiting for a human", overrides=overrides)
        g = claimed[0]
        text = (g.get("feedback") or "").strip() or None  # claimed with the decision (migration 0013)
        if g["decision"] == "revise" and text is None:
            # A ledger row from before the feedback column: the writer's instructions are gone, so
            # ask the human again rather than invent them.
            return Plan(tid, "reasked", detail="revise claimed without its text, never applied: gate reopened",
                        gate_id=g["gate_id"], overrides=overrides)
        if g["decision"] == "reject" and text is None:
            text = f"reject by {g['decided_by']} via {g['decided_via']} (re-delivered after a crash)"
        # The same resume value the channel would have sent (service.decisions.decide), with the
        # gate token its claim issued (one is issued at execution for a claim older than tokens).
        value = resume_value(g["decision"], text, g["decided_by"] or "unknown", g.get("resume_token"))
        return Plan(tid, "redelivered", graph_input=Command(resume=value),
                    detail=f"{g['decision']} by {g['decided_by']}", gate_id=g["gate_id"], overrides=overrides)
    if st.pending:
        return Plan(tid, "resumed", detail="pending: " + ", ".join(st.pending), overrides=overrides)
    if not st.values and cand.status == "queued" and cand.topic:
        return Plan(tid, "started", graph_input={"topic": cand.topic, "requester": cand.requester or "cli",
                                                 "source": cand.source or "cli"}, detail="never started",
                    overrides=overrides)
    return Plan(tid, "finished", detail=str((st.values or {}).get("outcome") or cand.status or "no state"))


async def _gates_by_thread(db: Database) -> dict[str, list[dict]]:
    gates: dict[str, list[dict]] = {}
    for g in await maintenance.decided_gates_waiting(db):
        gates.setdefault(g["thread_id"], []).append(g)
    return gates


async def _plan_one(graph, db: Database, cand: maintenance.RecoveryCandidate, gates: list[dict]) -> Plan:
    return _plan_for(cand, await thread_state(graph, cand.thread_id), gates)


async def plan_recovery(db: Database, *, stale_after_s: float = 0.0, terminal_window_s: float = 86400.0,
                        thread_ids: list[str] | None = None) -> list[tuple[maintenance.RecoveryCandidate, Plan]]:
    """Classify every candidate thread by its checkpoint (reads only)."""
    async with checkpointer() as saver:  # also makes sure the checkpoint tables exist
        graph = build_graph().compile(checkpointer=saver)
        candidates = await maintenance.recovery_candidates(db, stale_after_s=stale_after_s,
                                                           terminal_window_s=terminal_window_s)
        if thread_ids is not None:
            wanted = set(thread_ids)
            candidates = [c for c in candidates if c.thread_id in wanted]
        gates = await _gates_by_thread(db)
        return [(cand, await _plan_one(graph, db, cand, gates.get(cand.thread_id, []))) for cand in candidates]


async def drive_leased(thread_id: str, graph_input: Any, *, lease_s: float = maintenance.DEFAULT_LEASE_S,
                       **drive_kwargs) -> RunSnapshot | None:
    """The in-process engine's run under the thread's run lease; None if another process is driving it."""
    db = await get_database()
    async with run_lease(db, thread_id, lease_s=lease_s) as held:
        if not held:
            return None
        return await LocalEngine().run(thread_id, graph_input, **drive_kwargs)


async def _default_driver(thread_id: str, graph_input: Any, overrides: dict) -> RunSnapshot:
    return await LocalEngine().run(thread_id, graph_input, overrides=overrides)


def server_driver(client, *, graph_id: str = GRAPH_ID) -> Driver:
    """Resume through an Agent Server (langgraph_sdk client) instead of in this process, so the run
    is the server's (Studio shows it, its job limit applies). multitask_strategy="reject": if the
    server already re-queued its own cut-off run on the thread, ours is refused, not doubled."""

    server = ServerEngine(client, graph_id=graph_id)

    async def _drive(thread_id: str, graph_input: Any, overrides: dict) -> RunSnapshot:
        try:
            uuid.UUID(thread_id)
        except ValueError:  # the server only takes UUID thread ids; a script's own id runs here
            return await LocalEngine().run(thread_id, graph_input, overrides=overrides)
        return await server.run(thread_id, graph_input, overrides=overrides)

    return _drive


async def recover(*, stale_after_s: float = 0.0, terminal_window_s: float = 86400.0, concurrency: int = 4,
                  thread_ids: list[str] | None = None, lease_s: float = maintenance.DEFAULT_LEASE_S,
                  driver: Driver | None = None, dry_run: bool = False, busy_wait_s: float = 2.0,
                  on_plan: Callable[[Plan], None] | None = None) -> RecoveryReport:
    """One recovery pass. Safe to repeat and to run in several processes at once."""
    db = await get_database()
    run = driver or _default_driver
    report = RecoveryReport()
    planned = await plan_recovery(db, stale_after_s=stale_after_s, terminal_window_s=terminal_window_s,
                                  thread_ids=thread_ids)
    report.examined = len(planned)
    live = await maintenance.live_leases(db)
    limit = asyncio.Semaphore(max(1, concurrency))

    async def _act(saver_graph, cand: maintenance.RecoveryCandidate, plan: Plan) -> None:
        if on_plan:
            on_plan(plan)
        if plan.action in ("waiting", "finished"):
            getattr(report, plan.action).append(plan.thread_id)
            return
        if dry_run:
            (report.busy if plan.thread_id in live else getattr(report, plan.action)).append(plan.thread_id)
            return
        # A short wait: a holder that only checks a thread (and lets go) is not a run to leave alone.
        async with limit, run_lease(db, plan.thread_id, purpose="recover", lease_s=lease_s, wait_s=busy_wait_s) as held:
            if not held:
                report.busy.append(plan.thread_id)
                return
            try:
                # Re-plan under the lease: another recoverer may have finished it in the meantime.
                fresh = await _plan_one(saver_graph, db, cand, (await _gates_by_thread(db)).get(cand.thread_id, []))
                if fresh.action != plan.action:
                    (report.waiting if fresh.action == "waiting" else report.finished).append(plan.thread_id)
                    return
                if fresh.action == "reasked":
                    gate = await approvals.get_gate(db, fresh.gate_id)
                    if gate is not None:
                        await approvals.release_gate(db, fresh.gate_id, decided_by=gate.decided_by or "")
                    report.reasked.append(plan.thread_id)
                    return
                log.info("recovery: %s %s (%s)", fresh.action, fresh.thread_id, fresh.detail)
                graph_input = fresh.graph_input
                if fresh.action == "redelivered" and not (graph_input.resume or {}).get("gate_token"):
                    token = await approvals.issue_missing_token(db, fresh.gate_id)
                    graph_input = Command(resume={**graph_input.resume, "gate_token": token})
                snap = await run(fresh.thread_id, graph_input, fresh.overrides)
                getattr(report, fresh.action).append(fresh.thread_id)
                report.outcomes[fresh.thread_id] = ("waiting_for_human" if snap.waiting_for_human
                                                    else str(snap.values.get("outcome", "?")))
            except Exception as err:  # noqa: BLE001 - one thread's failure must not stop the others
                log.exception("recovery of %s failed", plan.thread_id)
                report.errors[plan.thread_id] = f"{type(err).__name__}: {err}"[:500]

    async with checkpointer() as saver:
        graph = build_graph().compile(checkpointer=saver)
        await asyncio.gather(*[_act(graph, cand, plan) for cand, plan in planned])
    return report


__all__ = ["Plan", "RecoveryReport", "ThreadState", "drive_leased", "plan_recovery", "recover", "run_lease", "server_driver", "thread_state"]
