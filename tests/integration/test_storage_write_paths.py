"""The two write paths of storage/posts.py give the same results.

On PostgreSQL a status move, an LLM call's row + usage and a human decision are one statement each
(sql.TRANSITION_POSTGRES, RECORD_LLM_CALL_POSTGRES, INSERT_DECISION_EVENT_POSTGRES); the
CockroachDB path runs the same steps as separate statements in a transaction. CockroachDB cannot
run here, so its path runs on PostgreSQL (the Database told it is on CockroachDB): the SQL it sends
is plain SQL both accept, and this checks that both paths keep the same rules and records. It does
not claim that CockroachDB ran.
"""
from __future__ import annotations

import uuid

import pytest

from config import get_settings
from storage.db import Database
from storage.posts import (
    IllegalTransition,
    PostNotFound,
    create_post,
    get_post,
    get_publication,
    insert_publication,
    list_events,
    llm_calls_for,
    record_human_decision,
    record_llm_call,
    record_publication,
    transition,
)


@pytest.fixture(params=["postgres", "cockroachdb"])
async def path_db(request, pg_url, db):
    database = await Database(pg_url, get_settings(), name=f"path-{request.param}").open()
    database.dialect = request.param  # which write path posts.py takes
    yield database
    await database.close()


async def test_moves_calls_decisions_and_publication(path_db):
    db = path_db
    tid = f"path-{db.dialect}-{uuid.uuid4().hex[:8]}"
    assert await create_post(db, tid, "paths", "tester", run_overrides={}) is True
    post = await transition(db, tid, "researching", actor="researcher", reason="go", detail={"k": 1}, revision=0)
    assert (post["status"], post["status_reason"]) == ("researching", "go")
    again = await transition(db, tid, "researching", actor="researcher")  # idempotent
    assert again["status"] == "researching"
    with pytest.raises(IllegalTransition):
        await transition(db, tid, "published", actor="x")
    with pytest.raises(PostNotFound):
        await transition(db, f"missing-{uuid.uuid4().hex}", "researching", actor="x")

    call = dict(thread_id=tid, role="writer", provider="p", endpoint="e", model="m", tokens_in=10, tokens_out=5,
                cost_usd=0.5, latency_ms=1, outcome="ok")
    first = await record_llm_call(db, **call)
    assert await record_llm_call(db, **call, call_id=first) == first  # the same call: counted once
    await record_llm_call(db, **call)
    stored = await get_post(db, tid)
    assert (stored["llm_calls"], stored["tokens_in"], stored["tokens_out"], float(stored["cost_usd"])) == (2, 20, 10, 1.0)
    assert len(await llm_calls_for(db, tid)) == 2

    decided = dict(reviewer="ann", decision="approve", payload_hash="h", checkpoint_id="cp-1")
    assert await record_human_decision(db, tid, **decided) is True
    assert await record_human_decision(db, tid, **decided) is False  # once per answered checkpoint
    assert await record_human_decision(db, tid, **{**decided, "checkpoint_id": "cp-2"}) is True

    for status in ("drafting", "editing", "publishing"):
        await transition(db, tid, status, actor="desk")
    key = f"{tid}:h"
    pub = dict(publish_key=key, thread_id=tid, destination="site", location="x", draft_hash="h", title="t")
    assert await record_publication(db, **pub) is True
    assert await record_publication(db, **pub) is False
    # The row as inserted, which publish_everywhere keeps instead of reading it back; None on a replay.
    row = await insert_publication(db, **{**pub, "publish_key": f"{key}:b", "destination": "b"}, complete=False)
    assert row == await get_publication(db, f"{key}:b") and row["destination"] == "b"
    assert await insert_publication(db, **{**pub, "publish_key": f"{key}:b", "destination": "b"}) is None
    assert (await get_post(db, tid))["status"] == "published"
    events = await list_events(db, tid)
    moves = [(e["from_status"], e["to_status"]) for e in events if e["kind"] == "transition"]
    assert moves == [("queued", "researching"), ("researching", "drafting"), ("drafting", "editing"),
                     ("editing", "publishing"), ("publishing", "published")]
    first_move = next(e for e in events if e["kind"] == "transition")
    assert first_move["actor"] == "researcher" and first_move["detail"] == {"reason": "go", "k": 1}
    assert [e["detail"]["checkpoint_id"] for e in events if e["kind"] == "human_decision"] == ["cp-1", "cp-2"]
    assert stored["revision"] == 0
