"""Reads a desk step skips because its caller already has the answer (issue 18 item 1): the
retrieve step takes the corpus check the plan step just made; the supervisor reads the post's
spend only for a run with a budget. The database is faked here (a boundary): the statements
saved per post are counted by `python -m evals.bench.concurrency`, on the real server."""
from __future__ import annotations

import pytest

from agents.models import ResearchPlan
from graphs import desks, engine, ledger
from graphs.state import PostState

CONFIG = {"configurable": {"thread_id": "t-reads"}}


@pytest.fixture
def corpus_asked(monkeypatch):
    asked: list[int] = []

    async def corpus_ready():
        asked.append(1)
        return False

    monkeypatch.setattr(desks, "_corpus_ready", corpus_ready)
    return asked


async def test_retrieve_takes_the_plans_corpus_check(corpus_asked):
    plan = ResearchPlan(topic="kv cache", skipped="the corpus is empty", corpus_ready=False)
    state = PostState.model_validate({"topic": "kv cache", "plan": plan.model_dump(mode="json")})
    out = await desks.retrieve(state, CONFIG)
    assert out["retrieval"]["skipped"] == "the corpus is empty"
    assert corpus_asked == []  # not asked again


async def test_retrieve_asks_when_the_plan_is_from_an_older_checkpoint(corpus_asked):
    old_plan = {"topic": "kv cache", "sub_questions": [], "urls": [], "model": "", "skipped": None, "error": None}
    state = PostState.model_validate({"topic": "kv cache", "plan": old_plan})  # no corpus_ready key
    out = await desks.retrieve(state, CONFIG)
    assert out["retrieval"]["skipped"] == "the corpus is empty"
    assert corpus_asked == [1]


@pytest.fixture
def usage_reads(monkeypatch):
    reads: list[str] = []

    async def post_usage(thread_id):
        reads.append(thread_id)
        return {"cost_usd": 0.25, "tokens": 10, "llm_calls": 1}

    monkeypatch.setattr(ledger, "post_usage", post_usage)
    return reads


def _visited(**kw) -> PostState:
    # cost_estimate set: not the first visit (which also creates the post row)
    return PostState.model_validate({"topic": "kv cache", "cost_estimate": engine.cost_estimate().model_dump(), **kw})


async def test_supervisor_reads_the_spend_only_for_a_run_with_a_budget(usage_reads):
    assert await engine.supervise(_visited(), CONFIG) == {}
    assert usage_reads == []
    budget = {"configurable": {**CONFIG["configurable"], "run_budget_usd": 1.0}}
    assert await engine.supervise(_visited(), budget) == {"spent_usd": 0.25}
    assert usage_reads == ["t-reads"]
    # A finished run is ended by route() whatever it spent.
    assert await engine.supervise(_visited(outcome="published"), budget) == {}
    assert usage_reads == ["t-reads"]
