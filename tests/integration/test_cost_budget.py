"""Cost in bounds (issue 16 item 5): the estimate before a run, the per-run budget that stops a run
at a desk boundary and hands the draft to a human with the spend, on embedded PostgreSQL and the
scripted LLM over HTTP with a price set for its models."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents import supervisor
from agents.models import BudgetStop, Draft, ResearchNotes
from graphs.state import PostState
from service.runner import resume, start_post
from storage import posts
from tests.engine_fixtures import JUDGE, PASSING, WRITER, reset_runtime, writer_reply
from tests.scripted_llm import Reply

ROOT = Path(__file__).resolve().parents[2]
PRICES = {WRITER: [2.0, 10.0], JUDGE: [1.0, 5.0]}  # USD per 1M tokens (input, output)
DRAFT_MARKER = "You are the writer of a technical publication"  # the Writer's draft and revise prompts
DRAFT_TOKENS_OUT = 100_000  # a draft reply priced at $1.00 (100k x $10 / 1M) + its input
SMALL = {"tokens_in": 100, "tokens_out": 100}


@pytest.fixture
def priced(llm, monkeypatch):
    """The scripted models with prices; a draft costs about $1, every other call about $0.001."""
    monkeypatch.setenv("NEWSROOM_LLM_PRICES_JSON", json.dumps(PRICES))
    monkeypatch.delenv("NEWSROOM_RUN_BUDGET_USD", raising=False)

    def writer(req):
        if not req.wants_json and DRAFT_MARKER in req.prompt:
            return writer_reply(req, tokens_in=1000, tokens_out=DRAFT_TOKENS_OUT)
        return writer_reply(req, **SMALL)

    llm.on_chat(writer, model=WRITER)
    llm.on_chat(lambda req: Reply.json(PASSING, **SMALL), model=JUDGE)
    reset_runtime()
    yield llm
    monkeypatch.undo()
    reset_runtime()


async def _events(db, tid, kind=None):
    return [e for e in await posts.list_events(db, tid) if kind is None or e["kind"] == kind]


async def test_budget_passed_after_the_writer_stops_before_the_editor_and_escalates_with_the_spend(db, priced):
    snap = await start_post("GQA on a budget", requester="alice", overrides={"run_budget_usd": 0.5})
    tid = snap.thread_id
    assert snap.waiting_for_human
    assert priced.requests_for(JUDGE) == []  # the Editor never ran: no claim check, no verdict
    row = await posts.get_post(db, tid)
    spent = float(row["cost_usd"])
    assert spent > 1.0  # the draft's own cost is in the spend
    assert row["status"] == "escalated" and row["status_reason"].startswith("over budget")
    p = snap.interrupt
    assert p["escalated"] is True and p["draft"]["version"] == 1
    assert f"${spent:.4f} of its $0.5000 budget" in p["escalation_reason"]
    assert "stopped before the editor" in p["escalation_reason"]
    assert p["budget_usd"] == 0.5 and p["budget_stop"]["stopped_before"] == "editor"
    assert p["cost_usd"] == pytest.approx(spent) and p["editor_decision"] is None
    assert "over budget" in p["description"]  # the Agent Inbox shape says so too
    from service.telegram.format import gate_summary  # the very payload as Telegram shows it

    shown = gate_summary(p)
    assert "⚠️ <b>ESCALATED</b>: over budget: this run has spent $" in shown and "of a $0.5000 budget" in shown
    stop, = await _events(db, tid, "budget_exceeded")
    assert stop["detail"]["spent_usd"] == pytest.approx(spent) and stop["detail"]["budget_usd"] == 0.5
    assert stop["detail"]["stopped_before"] == "editor" and stop["detail"]["draft_version"] == 1
    assert stop["detail"]["llm_calls"] == row["llm_calls"]
    # The estimate came first: in state and as an event before the first desk moved the post.
    kinds = [e["kind"] for e in await _events(db, tid)]
    assert kinds.index("cost_estimate") < kinds.index("transition")
    est = snap.values["cost_estimate"]
    assert est["budget_usd"] == 0.5 and est["usd_max"] >= est["usd_min"] > 0
    assert [s["step"] for s in est["steps"]][:3] == ["researcher.plan", "researcher.hyde", "researcher.notes"]

    # The human may still publish the draft as it is (no further LLM call).
    calls = row["llm_calls"]
    done = await resume(tid, {"action": "approve", "reviewer": "bob"})
    assert done.values["outcome"] == "published"
    assert (await posts.get_post(db, tid))["llm_calls"] == calls


async def test_a_revise_at_the_budget_gate_is_written_then_stopped_again(db, priced):
    snap = await start_post("GQA, revised over budget", overrides={"run_budget_usd": 0.5})
    again = await resume(snap.thread_id, {"action": "revise", "feedback": "shorter", "reviewer": "bob"})
    assert again.waiting_for_human and again.interrupt["draft"]["version"] == 2  # the human's revise was done
    assert priced.requests_for(JUDGE) == []  # ...and the Editor still not started on the run's own account
    stops = await _events(db, snap.thread_id, "budget_exceeded")
    assert [s["detail"]["draft_version"] for s in stops] == [1, 2]
    assert stops[1]["detail"]["spent_usd"] > stops[0]["detail"]["spent_usd"] + 0.9


async def test_within_budget_the_run_goes_on_and_without_one_nothing_stops(db, priced, monkeypatch):
    snap = await start_post("GQA with room to spare", overrides={"run_budget_usd": 50})
    assert snap.waiting_for_human and snap.interrupt["escalated"] is False
    assert snap.interrupt["editor_decision"] == "approve" and priced.requests_for(JUDGE)
    assert await _events(db, snap.thread_id, "budget_exceeded") == []
    # The environment's budget applies when the run names none.
    monkeypatch.setenv("NEWSROOM_RUN_BUDGET_USD", "0.5")
    reset_runtime()
    snap2 = await start_post("GQA under the environment's budget")
    assert snap2.interrupt["escalated"] is True and snap2.interrupt["budget_stop"]["budget_usd"] == 0.5


async def test_a_budget_passed_before_any_draft_fails_the_post_with_the_spend(db, priced):
    snap = await start_post("GQA with no budget at all", overrides={"run_budget_usd": 0})
    assert not snap.waiting_for_human and snap.values["outcome"] == "failed"
    row = await posts.get_post(db, snap.thread_id)
    assert row["status"] == "failed" and row["status_reason"].startswith("over budget before any draft")
    assert "stopped before the writer" in row["status_reason"]
    assert not [r for r in priced.requests if DRAFT_MARKER in r.prompt and r.model == WRITER]
    stop, = await _events(db, snap.thread_id, "budget_exceeded")
    assert stop["detail"]["draft_version"] is None and stop["detail"]["spent_usd"] > 0


async def test_an_out_of_bounds_budget_override_is_ignored(db, priced):
    snap = await start_post("GQA with a negative budget", overrides={"run_budget_usd": -1})
    assert snap.waiting_for_human and snap.interrupt["escalated"] is False
    assert snap.interrupt["budget_usd"] is None


async def test_cli_post_prints_the_estimate_and_the_budget_gate(db, priced, pg_url):
    env = dict(os.environ, DATABASE_URL=pg_url)
    out = subprocess.run([sys.executable, "-m", "service.cli", "post", "GQA from the CLI on a budget",
                          "--budget", "0.5"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "supervisor" in line)
    assert "estimate $" in lines[first] and "LLM calls; budget $0.5000" in lines[first]
    assert first < next(i for i, line in enumerate(lines) if "researching" in line)  # before the run's first desk
    assert "OVER BUDGET: spent $" in out.stdout and "stopped before the editor" in out.stdout
    assert "ESCALATED to human review (over budget: this run has spent $" in out.stdout
    assert "of a $0.5000 budget" in out.stdout
    refused = subprocess.run([sys.executable, "-m", "service.cli", "post", "x", "--budget", "-1"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--budget" in refused.stderr


# --- the decisions alone (agents/supervisor.py) ------------------------------------------------------

LIMITS = {"retrieval_top_k": 5, "writer_max_tokens": 450, "max_revisions": 3, "research_subquestions": 3,
          "retrieval_hyde": True, "claim_check": True, "plan_max_tokens": 160, "hyde_max_tokens": 160,
          "research_max_tokens": 250, "outline_max_tokens": 120, "claims_max_tokens": 400, "judge_max_tokens": 400,
          "judge_max_attempts": 3, "chunk_tokens": 256, "tokens_per_s": 50.0, "prompt_tokens_per_s": 500.0,
          "budget_usd": None}


def test_estimate_counts_each_desks_calls_and_prices_them_at_their_route():
    prices = {"writer": ("w", 2.0, 10.0), "researcher": ("w", 2.0, 10.0), "hyde": ("w", 2.0, 10.0),
              "judge": ("j", 3.0, 15.0)}
    est = supervisor.estimate_run(prices, limits=LIMITS)
    calls = {s.step: (s.calls_min, s.calls_max) for s in est.steps}
    # plan + HyDE + outline + draft + claims + judge at least; notes, 4 drafts, 4 claim checks, 4 x 3 verdicts at most
    assert calls == {"researcher.plan": (1, 1), "researcher.hyde": (1, 1), "researcher.notes": (0, 1),
                     "writer.outline": (1, 1), "writer.draft": (1, 4), "editor.claims": (1, 4), "editor.judge": (1, 12)}
    assert (est.llm_calls_min, est.llm_calls_max) == (6, 24)
    judge = next(s for s in est.steps if s.step == "editor.judge")
    assert judge.model == "j" and judge.tokens_out == 400
    assert judge.usd_per_call == pytest.approx((judge.tokens_in * 3.0 + 400 * 15.0) / 1e6)
    assert est.usd_max == pytest.approx(sum(s.calls_max * s.usd_per_call for s in est.steps), abs=1e-6)
    assert est.seconds_max > est.seconds_min > 0
    fewer = supervisor.estimate_run(prices, limits=dict(LIMITS, max_revisions=0, judge_max_attempts=1,
                                                        research_subquestions=0, claim_check=False))
    assert (fewer.llm_calls_min, fewer.llm_calls_max) == (4, 5) and fewer.usd_max < est.usd_max
    planned = supervisor.estimate_run(prices, limits=dict(LIMITS, outline_source="plan"))
    assert {s.step: s.calls_min for s in planned.steps}["writer.outline"] == 0  # the plan's questions, no call
    assert (planned.llm_calls_min, planned.llm_calls_max) == (5, 24)
    unjudged = supervisor.estimate_run(prices, limits=dict(LIMITS, rubric_judge=False))
    assert {s.step: (s.calls_min, s.calls_max) for s in unjudged.steps}["editor.judge"] == (0, 0)
    free = supervisor.estimate_run({r: ("local", 0.0, 0.0) for r in prices}, limits=LIMITS)
    assert free.usd_max == 0 and "estimate $0.0000-$0.0000" in free.summary()


def _state(**kw) -> PostState:
    notes = ResearchNotes(notes="n", grounded=False, queries=["t"])
    return PostState(topic="t", research=notes.model_dump(), **kw)


def test_route_stops_only_the_desks_the_run_starts_on_its_own():
    draft = Draft(version=1, title="T", body="b", model="m", prompt="writer.draft@4", reason="first").model_dump(mode="json")
    over = dict(max_revisions=3, policy="human", budget_usd=0.1)
    assert supervisor.route_next(_state(spent_usd=0.2), **over) == "over_budget"  # would start the writer
    assert supervisor.route_next(_state(spent_usd=0.1), **over) == "writer"  # exactly the budget is within it
    assert supervisor.route_next(_state(spent_usd=5.0), max_revisions=3, policy="human") == "writer"  # no budget
    assert supervisor.route_next(_state(spent_usd=0.2, drafts=[draft]), **over) == "over_budget"  # the editor
    revise = {"decision": "revise", "reviewer": "h", "feedback": "f", "payload_hash": "x", "draft_version": 1}
    assert supervisor.route_next(_state(spent_usd=0.2, drafts=[draft], decisions=[revise]), **over) == "writer"
    approve = dict(revise, decision="approve")
    assert supervisor.route_next(_state(spent_usd=0.2, drafts=[draft], decisions=[approve]), **over) == "publisher"
    stop = BudgetStop(spent_usd=0.2, budget_usd=0.1, stopped_before="editor", draft_version=1, llm_calls=2, tokens=9)
    escalated, why = supervisor.escalation(_state(spent_usd=0.2, drafts=[draft], budget_stop=stop), max_revisions=3)
    assert escalated and why.startswith("over budget: this run has spent $0.2000 of its $0.1000 budget")
