"""The post state machine, exhaustively: every (from, to) pair of PostStatus.

Legal pairs (from TRANSITIONS) move the post and append one 'transition' event carrying
from/to/actor; illegal pairs raise IllegalTransition and change nothing (status, events).
A repeat of the current status is an idempotent no-op (a node re-run after resume repeats
its transition) and records no event.
"""
from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import deque

import pytest

from storage.posts import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    NotRetryable,
    PostNotFound,
    PostStatus,
    create_post,
    get_post,
    list_events,
    record_publication,
    reopen_failed,
    transition,
)

ALL = list(PostStatus)
LEGAL = [(a, b) for a in ALL for b in ALL if b in TRANSITIONS[a]]
ILLEGAL = [(a, b) for a in ALL for b in ALL if a != b and b not in TRANSITIONS[a]]


def _path_to(target: PostStatus) -> list[PostStatus]:
    """Shortest legal path queued -> target (BFS over TRANSITIONS)."""
    prev: dict[PostStatus, PostStatus | None] = {PostStatus.QUEUED: None}
    todo = deque([PostStatus.QUEUED])
    while todo:
        s = todo.popleft()
        for n in sorted(TRANSITIONS[s]):
            if n not in prev:
                prev[n] = s
                todo.append(n)
    assert target in prev, f"{target} unreachable from queued"
    path = []
    s: PostStatus | None = target
    while s is not None and s != PostStatus.QUEUED:
        path.append(s)
        s = prev[s]
    return list(reversed(path))


async def _post_in(db, status: PostStatus, tag: str) -> str:
    tid = f"sm-{tag}-{uuid.uuid4().hex[:8]}"
    assert await create_post(db, tid, "How GQA shrinks the KV cache", "tester")
    for step in _path_to(status):
        await transition(db, tid, step, actor="setup")
    assert (await get_post(db, tid))["status"] == status
    return tid


def test_table_is_sane():
    # Every status is reachable from queued; terminal ones have no exit; the enumeration is complete.
    for s in ALL:
        _path_to(s)
    assert TERMINAL == {PostStatus.PUBLISHED, PostStatus.REJECTED, PostStatus.FAILED}
    assert len(LEGAL) + len(ILLEGAL) + len(ALL) == len(ALL) ** 2
    assert len(LEGAL) == sum(len(v) for v in TRANSITIONS.values())


@pytest.mark.parametrize("src", ALL, ids=str)
async def test_every_illegal_transition_from_state_is_refused(db, src):
    targets = [b for (a, b) in ILLEGAL if a == src]
    tid = await _post_in(db, src, "bad")
    before_events = await list_events(db, tid)
    before = await get_post(db, tid)
    for dst in targets:
        with pytest.raises(IllegalTransition) as info:
            await transition(db, tid, dst, actor="mallory", reason="try")
        assert (info.value.current, info.value.wanted) == (src, dst)
        assert f"{src} -> {dst}" in str(info.value)
    after = await get_post(db, tid)
    assert after["status"] == src and after["updated_at"] == before["updated_at"]
    assert await list_events(db, tid) == before_events  # nothing appended by refused moves
    # Terminal states refuse everything but themselves.
    if src in TERMINAL:
        assert len(targets) == len(ALL) - 1


@pytest.mark.parametrize("src,dst", LEGAL, ids=lambda s: str(s))
async def test_every_legal_transition_is_recorded(db, src, dst):
    tid = await _post_in(db, src, "ok")
    n_before = len(await list_events(db, tid))
    actor = f"desk-{uuid.uuid4().hex[:6]}"
    post = await transition(db, tid, dst, actor=actor, reason=f"{src}->{dst}", detail={"k": 1}, revision=2)
    assert post["status"] == dst
    stored = await get_post(db, tid)
    assert stored["status"] == dst and stored["status_reason"] == f"{src}->{dst}" and stored["revision"] == 2
    events = await list_events(db, tid)
    assert len(events) == n_before + 1
    ev = events[-1]
    assert (ev["kind"], ev["from_status"], ev["to_status"], ev["actor"]) == ("transition", src, dst, actor)
    assert ev["detail"]["reason"] == f"{src}->{dst}" and ev["detail"]["k"] == 1
    assert ev["at"] is not None


async def test_full_history_is_an_audit_trail(db):
    """The events of a post replay its path exactly: created, then each hop with its actor."""
    tid = await _post_in(db, PostStatus.PUBLISHING, "trail")
    events = await list_events(db, tid)
    assert events[0]["kind"] == "created" and events[0]["to_status"] == PostStatus.QUEUED
    hops = [(e["from_status"], e["to_status"]) for e in events[1:]]
    path = [PostStatus.QUEUED, *_path_to(PostStatus.PUBLISHING)]
    assert hops == list(itertools.pairwise(path))
    assert all(e["actor"] == "setup" for e in events[1:])


async def test_repeat_of_current_status_is_idempotent(db):
    tid = await _post_in(db, PostStatus.DRAFTING, "idem")
    n = len(await list_events(db, tid))
    post = await transition(db, tid, PostStatus.DRAFTING, actor="writer")
    assert post["status"] == PostStatus.DRAFTING
    assert len(await list_events(db, tid)) == n


async def test_replayed_step_after_its_successor_committed_leaves_the_post(db):
    tid = await _post_in(db, PostStatus.PUBLISHED, "replay")
    n = len(await list_events(db, tid))
    with pytest.raises(IllegalTransition):  # without the marker a replay would be refused
        await transition(db, tid, PostStatus.PUBLISHING, actor="publisher")
    post = await transition(db, tid, PostStatus.PUBLISHING, actor="publisher", unless_in=("published",))
    assert post["status"] == PostStatus.PUBLISHED and len(await list_events(db, tid)) == n
    # The marker only skips the listed statuses: other illegal moves are still refused.
    tid2 = await _post_in(db, PostStatus.REJECTED, "replay-other")
    with pytest.raises(IllegalTransition):
        await transition(db, tid2, PostStatus.PUBLISHING, actor="publisher", unless_in=("published",))


async def test_unknown_post_and_unknown_status(db):
    with pytest.raises(PostNotFound):
        await transition(db, f"missing-{uuid.uuid4().hex}", PostStatus.RESEARCHING, actor="x")
    tid = await _post_in(db, PostStatus.QUEUED, "unk")
    with pytest.raises(ValueError):
        await transition(db, tid, "teleported", actor="x")
    assert (await get_post(db, tid))["status"] == PostStatus.QUEUED


async def test_create_post_is_idempotent(db):
    tid = await _post_in(db, PostStatus.QUEUED, "dup")
    assert await create_post(db, tid, "another topic", "someone") is False
    post = await get_post(db, tid)
    assert post["topic"] == "How GQA shrinks the KV cache"
    assert [e["kind"] for e in await list_events(db, tid)] == ["created"]


async def test_racing_human_decisions_exactly_one_wins(db):
    """Approve and reject pressed at once: one commits, the other is refused as illegal."""
    for _ in range(5):
        tid = await _post_in(db, PostStatus.AWAITING_APPROVAL, "race")
        results = await asyncio.gather(
            transition(db, tid, PostStatus.PUBLISHING, actor="alice"),
            transition(db, tid, PostStatus.REJECTED, actor="bob"),
            return_exceptions=True,
        )
        ok = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, IllegalTransition)]
        assert len(ok) == 1 and len(refused) == 1, results
        final = (await get_post(db, tid))["status"]
        assert final == ok[0]["status"]
        hops = [e for e in await list_events(db, tid) if e["from_status"] == PostStatus.AWAITING_APPROVAL]
        assert len(hops) == 1 and hops[0]["to_status"] == final


async def test_publication_recorded_once_under_concurrent_replays(db):
    """8 concurrent replays of the same publish: one ledger row, one published transition."""
    tid = await _post_in(db, PostStatus.PUBLISHING, "pub")
    key = f"{tid}:deadbeef"
    results = await asyncio.gather(*[
        record_publication(db, publish_key=key, thread_id=tid, destination="site",
                           location=f"site/{tid}.html", draft_hash="deadbeef", title="GQA")
        for _ in range(8)
    ])
    assert sorted(results) == [False] * 7 + [True]
    assert (await get_post(db, tid))["status"] == PostStatus.PUBLISHED
    published = [e for e in await list_events(db, tid) if e["to_status"] == PostStatus.PUBLISHED]
    assert len(published) == 1 and published[0]["detail"]["publish_key"] == key


async def test_a_failed_post_is_reopened_only_by_the_explicit_retry_step(db):
    """failed is terminal for the graph's moves; `newsroom retry` moves it back to the status it
    failed in (logged as 'retry'), once, and a retry cut off before its run may repeat it."""
    tid = await _post_in(db, PostStatus.DRAFTING, "retry")
    await transition(db, tid, PostStatus.FAILED, actor="writer", reason="endpoint down")
    with pytest.raises(IllegalTransition):
        await transition(db, tid, PostStatus.DRAFTING, actor="writer")
    assert await reopen_failed(db, tid, actor="ann") == PostStatus.DRAFTING
    post = await get_post(db, tid)
    assert (post["status"], post["status_reason"]) == ("drafting", None)
    last = (await list_events(db, tid))[-1]
    assert (last["kind"], last["actor"], last["from_status"], last["to_status"]) == ("retry", "ann", "failed", "drafting")
    assert last["detail"]["failed_with"] == "endpoint down"
    events = len(await list_events(db, tid))
    assert await reopen_failed(db, tid, actor="ann") == PostStatus.DRAFTING  # repeated: nothing more logged
    assert len(await list_events(db, tid)) == events
    await transition(db, tid, PostStatus.EDITING, actor="editor")
    with pytest.raises(NotRetryable, match="is editing, not failed"):
        await reopen_failed(db, tid, actor="ann")
    assert len(await list_events(db, tid)) == events + 1
    with pytest.raises(PostNotFound):
        await reopen_failed(db, "sm-no-such-post", actor="ann")

