"""R3 faults: LLM endpoints failing in every way we know, and the database restarted mid-run.

    python -m evals.chaos.faults [--repeat 1] [--deadline 60] [--only NAME ...]

Each scenario runs one post in-process (service.runner) on a private embedded PostgreSQL with the
scripted LLM over real HTTP (tests/scripted_llm.py), per-attempt timeout 2 s, 2 attempts per route.
A run must END within the deadline as one of:
  published   (it reached the gate; the drill approves it; the Publisher published it once)
  escalated   (waiting for a human, marked escalated, with the reason)
  failed      (outcome failed, with a reason naming the desk and the error)
Figures: runs, how each ended, hung (goal 0), failed without a reason (goal 0), invalid verdicts
that approved (goal 0), published without a human approving (goal 0), seconds per scenario.
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evals.chaos.support import private_postgres, use_scripted_llm

WRITER, JUDGE = "newsroom-writer", "newsroom-judge"


@dataclass
class Scenario:
    name: str
    fault: str  # what is wrong, in words
    expect: set[str]  # acceptable endings
    script: Callable  # (llm) -> None: queue faults / handlers
    during: Callable[[Drill], Awaitable[None]] | None = None  # an action while the run goes on
    policy: str = "human"  # approval policy for the run


@dataclass
class Ending:
    scenario: str
    ending: str  # published | escalated | failed | hung | waiting | error
    reason: str | None
    seconds: float
    editor_decisions: list[str] = field(default_factory=list)
    human_approved: bool = False
    publications: int = 0
    as_expected: bool = False


def _passing():
    from tests.engine_fixtures import PASSING

    return PASSING


def _normal(llm, *, writer_delay_s: float = 0.0, judge_delay_s: float = 0.0) -> None:
    from tests.engine_fixtures import writer_reply
    from tests.scripted_llm import Reply

    llm.on_chat(lambda req: writer_reply(req, delay_s=writer_delay_s), model=WRITER)
    llm.on_chat(lambda req: Reply.json(_passing(), delay_s=judge_delay_s), model=JUDGE)


def _scenarios() -> list[Scenario]:
    from tests.scripted_llm import Fault, Reply

    def normal_then(*items, model=WRITER):
        def script(llm):
            _normal(llm)
            llm.script(*items, model=model)
        return script

    def always(handler, model):
        def script(llm):
            _normal(llm)
            llm.on_chat(handler, model=model)
        return script

    broken_json = '{"technical_accuracy": 5, "calibration": 5, "mechanistic_depth": '
    out_of_range = {**_passing(), "calibration": 1234567890}
    missing_keys = {"technical_accuracy": 5, "calibration": 5}

    async def restart_db_while_writing(drill: Drill) -> None:
        await drill.wait_for_request(WRITER, 2)  # the research call is done, the draft call is in flight
        await asyncio.to_thread(drill.restart_db)

    async def restart_db_while_judging(drill: Drill) -> None:
        await drill.wait_for_request(JUDGE, 1)
        await asyncio.to_thread(drill.restart_db)

    def slow(writer_delay_s=0.0, judge_delay_s=0.0):
        return lambda llm: _normal(llm, writer_delay_s=writer_delay_s, judge_delay_s=judge_delay_s)

    return [
        Scenario("writer_500_once", "the writer endpoint answers 500 once", {"published"},
                 normal_then(Fault.server_error())),
        Scenario("writer_500_always", "the writer endpoint answers 500 to everything", {"failed"},
                 always(lambda req: Fault.server_error(), WRITER)),
        Scenario("writer_hangs_once", "one writer call hangs past the 2 s timeout", {"published"},
                 normal_then(Fault.hang(30))),
        Scenario("writer_hangs_always", "every writer call hangs", {"failed"},
                 always(lambda req: Fault.hang(30), WRITER)),
        Scenario("writer_truncated_once", "a writer reply is cut off mid-body", {"published"},
                 normal_then(Fault.truncated())),
        Scenario("writer_truncated_always", "every writer reply is cut off", {"failed"},
                 always(lambda req: Fault.truncated(), WRITER)),
        Scenario("writer_rate_limited", "429 with Retry-After 0.5 s, then fine", {"published"},
                 normal_then(Fault.rate_limited(0.5))),
        Scenario("judge_500_always", "the judge endpoint answers 500 to everything", {"escalated"},
                 always(lambda req: Fault.server_error(), JUDGE)),
        Scenario("judge_hangs_always", "every judge call hangs", {"escalated"},
                 always(lambda req: Fault.hang(30), JUDGE)),
        Scenario("judge_truncated_always", "every judge reply is cut off", {"escalated"},
                 always(lambda req: Fault.truncated(), JUDGE)),
        Scenario("judge_invalid_json", "the judge returns broken JSON (autonomous policy)", {"escalated"},
                 always(lambda req: broken_json, JUDGE), policy="escalations_only"),
        Scenario("judge_out_of_range", "calibration = 1234567890 (autonomous policy)", {"escalated"},
                 always(lambda req: out_of_range, JUDGE), policy="escalations_only"),
        Scenario("judge_missing_keys", "a verdict without most keys (autonomous policy)", {"escalated"},
                 always(lambda req: missing_keys, JUDGE), policy="escalations_only"),
        Scenario("judge_cut_at_max_tokens", "a verdict cut at max_tokens (finish_reason=length)", {"escalated"},
                 always(lambda req: Reply(text=broken_json, finish_reason="length"), JUDGE), policy="escalations_only"),
        Scenario("judge_invalid_then_valid", "one invalid verdict, then a valid passing one", {"published"},
                 normal_then(out_of_range, model=JUDGE)),
        Scenario("db_restart_while_writing", "PostgreSQL restarted while the writer works", {"published"},
                 slow(writer_delay_s=1.5), during=restart_db_while_writing),
        Scenario("db_restart_while_judging", "PostgreSQL restarted while the judge works", {"published"},
                 slow(judge_delay_s=1.5), during=restart_db_while_judging),
    ]


class Drill:
    def __init__(self, llm, pg_dir: Path, deadline_s: float):
        self.llm, self.pg_dir, self.deadline_s = llm, pg_dir, deadline_s
        self.db_restarts = 0

    def restart_db(self) -> None:
        from storage.embedded import restart_embedded

        restart_embedded(self.pg_dir)
        self.db_restarts += 1

    async def wait_for_request(self, model: str, n: int, timeout_s: float = 30.0) -> None:
        end = time.monotonic() + timeout_s
        while len(self.llm.requests_for(model)) < n and time.monotonic() < end:
            await asyncio.sleep(0.02)

    async def run(self, sc: Scenario) -> Ending:
        from service.runner import current, resume, start_post
        from storage import posts
        from storage.connect import get_database
        from tools.llm import reset_gateway

        self.llm.reset()
        reset_gateway()  # fresh circuit breakers: one scenario's open breaker is not the next one's fault
        sc.script(self.llm)
        tid = f"fault-{sc.name}-{uuid.uuid4().hex[:6]}"
        t0 = time.monotonic()
        overrides = {"approval_policy": sc.policy}
        side = asyncio.create_task(sc.during(self)) if sc.during else None
        ending, reason, approved = "error", None, False
        try:
            async with asyncio.timeout(self.deadline_s):
                snap = await start_post(f"Fault drill: {sc.fault}", thread_id=tid, overrides=overrides)
                if snap.waiting_for_human and not snap.interrupt.get("escalated"):
                    approved = True  # the drill's human approves a draft the editor passed
                    snap = await resume(tid, {"action": "approve", "reviewer": "fault-drill"}, overrides=overrides)
                if snap.waiting_for_human:
                    ending, reason = "escalated", snap.interrupt.get("escalation_reason")
                else:
                    ending = str(snap.values.get("outcome"))
                    reason = snap.values.get("error")
        except TimeoutError:
            ending, reason = "hung", f"no end within {self.deadline_s:.0f} s"
        except Exception as err:  # noqa: BLE001 - an exception out of the engine is a finding, reported
            ending, reason = "error", f"{type(err).__name__}: {err}"[:300]
        finally:
            if side is not None:
                side.cancel()
        seconds = time.monotonic() - t0
        db = await get_database()
        try:
            values = (await current(tid)).values or {}
        except Exception:  # noqa: BLE001
            values = {}
        decisions = [r.get("decision") for r in values.get("reviews", [])]
        pubs = len(await posts.publications_for(db, tid))
        post = await posts.get_post(db, tid)
        if ending == "failed" and not reason and post:
            reason = post.get("status_reason")
        return Ending(sc.name, ending, (reason or None) and str(reason)[:240], round(seconds, 2), decisions, approved,
                      pubs, ending in sc.expect)


async def drill(repeat: int, deadline_s: float, only: list[str] | None = None, echo=print) -> dict:
    from tests.scripted_llm import ScriptedLLM

    os.environ.update({"NEWSROOM_LLM_TIMEOUT_S": "2", "NEWSROOM_LLM_MAX_ATTEMPTS": "2",
                       "NEWSROOM_LLM_RETRY_INITIAL_S": "0.05", "NEWSROOM_LLM_RETRY_MAX_S": "0.2",
                       "NEWSROOM_BREAKER_COOLDOWN_S": "1", "NEWSROOM_JUDGE_MAX_ATTEMPTS": "3",
                       "NEWSROOM_LOG_LEVEL": "WARNING"})
    scenarios = [s for s in _scenarios() if not only or s.name in only]
    endings: list[Ending] = []
    t0 = time.monotonic()
    with private_postgres() as (_, state_dir), ScriptedLLM(models=[WRITER, JUDGE]) as llm:
        use_scripted_llm(llm)
        from storage.connect import close_database

        runner = Drill(llm, state_dir / "pg", deadline_s)
        try:
            for _ in range(repeat):
                for sc in scenarios:
                    e = await runner.run(sc)
                    endings.append(e)
                    echo(f"{sc.name:<26} {e.ending:<10} {e.seconds:6.2f}s  {'ok ' if e.as_expected else 'UNEXPECTED'} "
                         f"{(e.reason or '')[:110]}")
        finally:
            await close_database()
    invalid = {"judge_invalid_json", "judge_out_of_range", "judge_missing_keys", "judge_cut_at_max_tokens"}
    return {
        "runs": len(endings),
        "endings": dict(Counter(e.ending for e in endings)),
        "hung": sum(1 for e in endings if e.ending == "hung"),
        "errors": sum(1 for e in endings if e.ending == "error"),
        "failed_without_reason": sum(1 for e in endings if e.ending == "failed" and not e.reason),
        "invalid_verdict_approved": sum(1 for e in endings if e.scenario in invalid
                                        and ("approve" in e.editor_decisions or e.publications)),
        "published_without_human": sum(1 for e in endings if e.publications and not e.human_approved),
        "unexpected": [f"{e.scenario}: {e.ending}" for e in endings if not e.as_expected],
        "db_restarts": runner.db_restarts,
        "max_seconds": max((e.seconds for e in endings), default=0.0),
        "deadline_s": deadline_s,
        "seconds": round(time.monotonic() - t0, 1),
        "scenarios": [asdict(e) for e in endings],
    }


QUICK_ARGS = []  # evals.bench.run_all --quick


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="R3 fault drill")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=60.0)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args(argv)
    f = asyncio.run(drill(args.repeat, args.deadline, args.only))
    print(f"{f['runs']} runs: {f['endings']}; hung {f['hung']}, failed without a reason {f['failed_without_reason']}, "
          f"invalid verdicts approved {f['invalid_verdict_approved']}, unexpected {len(f['unexpected'])}, "
          f"slowest {f['max_seconds']}s (deadline {f['deadline_s']:.0f}s)")
    print(json.dumps(f, default=str))
    ok = not (f["hung"] or f["errors"] or f["failed_without_reason"] or f["invalid_verdict_approved"]
              or f["published_without_human"] or f["unexpected"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
