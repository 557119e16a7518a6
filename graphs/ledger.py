"""The graph's bookkeeping: the posts table kept in step with the graph, the approvals ledger's
claimed decisions, drafts and desk events recorded. The nodes (graphs/desks.py, graphs/engine.py)
call these; the decisions they serve are agents/'s (agents/ does no I/O)."""
from __future__ import annotations

from agents.supervisor import ResumeAnswer, gate_token_of, publication_refusal
from config.run_config import run_overrides
from storage import approvals, posts, training
from storage.connect import get_database
from tools.tracing import record_scores


async def ledger_decision(thread_id: str, interrupt_id: str, answer, *, checkpoint_id: str | None,
                          draft_hash: str) -> ResumeAnswer | None:
    """The answer the ledger claimed for this interrupt (decision, feedback, reviewer, the edit's
    Markdown, the section), if `answer` carries the token it issued and the gate showed this draft;
    None for any other resume."""
    gate = await approvals.consume_gate_token(await get_database(), thread_id, interrupt_id, gate_token_of(answer),
                                              checkpoint_id, draft_hash=draft_hash)
    if gate is None or gate.decision not in approvals.HUMAN_DECISIONS:
        return None
    text = gate.feedback
    if gate.decision == "reject" and not text:
        text = "rejected"
    if gate.decision in approvals.EDIT_DECISIONS and not gate.edited_draft:
        return None  # an edit claimed without its text: nothing to apply
    return ResumeAnswer(action=gate.decision, text=text, reviewer=gate.decided_by or "unknown",
                        draft=gate.edited_draft, section=gate.section)


async def publication_refused(thread_id: str, draft, *, default_policy: str) -> str | None:
    """Why this draft may not be published, or None: the supervisor's rule
    (agents.supervisor.publication_refusal) over what the database holds for the post."""
    db = await get_database()
    events = await posts.list_events(db, thread_id)
    gates = await approvals.approved_gates(db, thread_id)
    policy = (await posts.run_overrides_of(db, thread_id)).get("approval_policy") or default_policy
    return publication_refusal(draft, events=events, approved_gates=gates, policy=policy)


async def advance_post(thread_id: str, status: str, *, actor: str, reason: str | None = None,
                       detail: dict | None = None, revision: int | None = None,
                       unless_in: tuple[str, ...] = ()) -> None:
    """Keep the posts table in step with the graph (idempotent: a re-run repeats it harmlessly)."""
    db = await get_database()
    await posts.transition(db, thread_id, status, actor=actor, reason=reason, detail=detail, revision=revision,
                           unless_in=unless_in)


async def ensure_post(thread_id: str, *, topic: str, requester: str, source: str, metadata: dict | None = None,
                      configurable: dict | None = None) -> None:
    """The post row, created on the first supervisor visit; with `configurable`, the run's overrides
    are kept with it (once, at start), so a run resumed after a crash runs with them again."""
    db = await get_database()
    await posts.create_post(db, thread_id, topic, requester, source=source, metadata=metadata,
                            run_overrides=run_overrides(configurable) if configurable is not None else None)


async def post_usage(thread_id: str) -> dict:
    db = await get_database()
    row = await posts.get_post(db, thread_id)
    if row is None:
        return {"cost_usd": 0.0, "tokens": 0, "llm_calls": 0}
    return {"cost_usd": float(row["cost_usd"]), "tokens": int(row["tokens_in"] + row["tokens_out"]),
            "llm_calls": int(row["llm_calls"])}


async def record_decision(thread_id: str, *, reviewer: str, decision: str, payload_hash: str,
                          checkpoint_id: str | None, detail: dict) -> bool:
    """The human's answer at the gate: an event in the DB (once per answered checkpoint) and a
    "human_decision" score on the thread's Langfuse trace (a no-op when tracing is off)."""
    db = await get_database()
    recorded = await posts.record_human_decision(db, thread_id, reviewer=reviewer, decision=decision,
                                                 payload_hash=payload_hash, checkpoint_id=checkpoint_id, detail=detail)
    # Keyed like the DB row (the answered checkpoint): a replayed node upserts the same score, and a
    # replay after a crash that lost the first upload still delivers it. Never raises.
    feedback = detail.get("feedback")
    record_scores(thread_id, {"human_decision": decision}, key=f"human-decision:{checkpoint_id or payload_hash}",
                  comments={"human_decision": feedback} if feedback else None,
                  metadata={"reviewer": reviewer, "draft_version": detail.get("draft_version"),
                            "escalated": detail.get("escalated"), "payload_hash": payload_hash})
    return recorded


async def record_desk_event(thread_id: str, *, actor: str, kind: str, detail: dict) -> None:
    db = await get_database()
    await posts.record_event(db, thread_id, actor=actor, kind=kind, detail=detail)


async def record_draft(thread_id: str, draft, messages: list[dict]) -> None:
    """The draft's text, model (the adapter that wrote it) and prompt as a row: the training export reads these."""
    await training.record_draft(await get_database(), thread_id=thread_id, version=draft.version, title=draft.title,
                                body=draft.body, content_hash=draft.content_hash, model=draft.model,
                                prompt=draft.prompt, reason=draft.reason, messages=messages,
                                author="human" if draft.reason == "human_edit" else "writer")
