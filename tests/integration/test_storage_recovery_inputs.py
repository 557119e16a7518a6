"""What the ledger keeps so that recovery can finish a run the way it was meant to go: the text
claimed with a human decision (approval_gates.feedback, migration 0013) and the run's setting
overrides (posts.metadata["run_overrides"])."""
from __future__ import annotations

import uuid

from storage import approvals, maintenance, posts


async def _gate(db, topic: str):
    tid = str(uuid.uuid4())
    assert await posts.create_post(db, tid, topic, "tester")
    return tid, await approvals.register_gate(db, thread_id=tid, interrupt_id=f"i-{uuid.uuid4().hex[:8]}",
                                              draft_version=1)


async def _waiting_for_approval(db, tid: str) -> None:
    for status in ("researching", "drafting", "editing", "awaiting_approval"):
        await posts.transition(db, tid, status, actor="tester")


async def test_the_claim_keeps_its_text_and_only_the_first_claim_counts(db):
    tid, gate = await _gate(db, "feedback kept with the claim")
    assert await approvals.claim_gate(db, gate.gate_id, decision="revise", decided_by="ann", decided_via="web",
                                      feedback="Add the arithmetic")
    assert not await approvals.claim_gate(db, gate.gate_id, decision="reject", decided_by="bob",
                                          decided_via="telegram", feedback="No")
    kept = await approvals.get_gate(db, gate.gate_id)
    assert (kept.decision, kept.decided_by, kept.feedback) == ("revise", "ann", "Add the arithmetic")

    await _waiting_for_approval(db, tid)
    waiting = [g for g in await maintenance.decided_gates_waiting(db) if g["gate_id"] == gate.gate_id]
    assert [g["feedback"] for g in waiting] == ["Add the arithmetic"]  # what recovery reads


async def test_a_released_claim_forgets_its_text(db):
    _, gate = await _gate(db, "claim released after a failed start")
    assert await approvals.claim_gate(db, gate.gate_id, decision="reject", decided_by="cy", decided_via="web",
                                      feedback="Wrong topic")
    await approvals.release_gate(db, gate.gate_id, decided_by="cy")
    released = await approvals.get_gate(db, gate.gate_id)
    assert not released.decided and released.decision is None and released.feedback is None
    # The next claimant's words, not the released ones, are what a recovery would re-deliver.
    assert await approvals.claim_gate(db, gate.gate_id, decision="approve", decided_by="dee", decided_via="telegram")
    assert (await approvals.get_gate(db, gate.gate_id)).feedback is None


async def test_run_overrides_are_kept_at_creation_and_never_replaced(db):
    tid = str(uuid.uuid4())
    assert await posts.create_post(db, tid, "overrides at start", "tester", metadata={"chat_id": 7},
                                   run_overrides={"approval_policy": "escalations_only"})
    # A later run on the thread (a resume from another channel, with other or no overrides).
    assert not await posts.create_post(db, tid, "overrides at start", "tester", run_overrides={})
    assert not await posts.create_post(db, tid, "overrides at start", "tester", run_overrides={"max_revisions": 9})
    assert await posts.run_overrides_of(db, tid) == {"approval_policy": "escalations_only"}
    assert (await posts.get_post(db, tid))["metadata"]["chat_id"] == 7


async def test_run_overrides_are_added_to_a_post_accepted_before_its_run(db):
    tid = str(uuid.uuid4())
    assert await posts.create_post(db, tid, "accepted first", "tester", metadata={"chat_id": 8})
    assert await posts.run_overrides_of(db, tid) == {}
    before = (await posts.get_post(db, tid))["updated_at"]
    assert not await posts.create_post(db, tid, "accepted first", "tester", run_overrides={"max_revisions": 1})
    post = await posts.get_post(db, tid)
    assert post["metadata"] == {"chat_id": 8, "run_overrides": {"max_revisions": 1}}
    assert post["updated_at"] == before  # not progress: recovery's --stale-after clock is untouched
    assert await posts.run_overrides_of(db, str(uuid.uuid4())) == {}  # no post: none


async def test_a_reasked_gate_keeps_the_old_gates_chat_waiting_time_and_reminder(db):
    """The same draft asked again at a new interrupt (after an invalid answer) is one wait for the
    human: the sweep must not send a second reminder because the interrupt id changed."""
    tid, old = await _gate(db, "re-asked after an invalid answer")
    old = await approvals.register_gate(db, thread_id=tid, interrupt_id=old.interrupt_id, draft_version=1,
                                        chat_id=4242)
    assert await approvals.mark_reminded(db, old.gate_id)
    old = await approvals.get_gate(db, old.gate_id)

    new = await approvals.reask_gate(db, old.gate_id, f"i-{uuid.uuid4().hex[:8]}")
    assert new.gate_id != old.gate_id and new.draft_version == 1
    assert (new.chat_id, new.waiting_since, new.reminded_at) == (4242, old.waiting_since, old.reminded_at)
    assert new.escalated_at is None and new.decided_at is None
    assert not await approvals.mark_reminded(db, new.gate_id)  # the single reminder was already sent
    superseded = await approvals.get_gate(db, old.gate_id)
    assert (superseded.decision, superseded.decided_via) == ("superseded", approvals.REASKED)
