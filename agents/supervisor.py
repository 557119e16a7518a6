"""The supervisor: a deterministic router over typed state (no LLM needed to route), and the
bookkeeping that keeps the posts table in step with the graph."""
from __future__ import annotations

import hashlib
import json
from typing import Literal

from agents.editor import next_step_after_review
from tools.tracing import record_scores

Next = Literal["researcher", "writer", "editor", "prepare_approval", "publisher", "finish"]


def route_next(state, *, max_revisions: int, policy: str) -> Next:
    """Pick the next desk from the state alone, so a replay after a crash picks the same one."""
    if state.outcome != "pending":
        return "finish"
    if state.research is None:
        return "researcher"
    draft, review, decision = state.latest_draft, state.latest_review, state.latest_decision
    if draft is None:
        return "writer"
    if decision is not None and decision.draft_version == draft.version:
        # A human answered about this draft.
        return {"approve": "publisher", "revise": "writer", "reject": "finish"}[decision.decision]
    if review is None or review.draft_version != draft.version:
        check = state.citation_check_for(draft.version)
        if check is None or check.passed:
            return "editor"
        # Unsupported claims: back to the Writer unjudged (a revision cycle), or to a human when
        # the budget is spent.
        step = next_step_after_review("reject", state.revision, max_revisions, policy)
        return {"revise": "writer", "escalate": "prepare_approval"}[step]
    step = next_step_after_review(review.decision, state.revision, max_revisions, policy,
                                  human_asked_for_revision=any(d.decision == "revise" for d in state.decisions))
    return {"publish": "publisher", "await_human": "prepare_approval", "revise": "writer",
            "escalate": "prepare_approval"}[step]


def escalation(state, *, max_revisions: int) -> tuple[bool, str | None]:
    """(escalated, why) for the draft at the gate: anything but an Editor approval of it is escalated."""
    draft, review = state.latest_draft, state.latest_review
    if review is not None and review.draft_version == draft.version:
        if review.decision == "approve":
            return False, None
        if review.decision == "invalid":
            return True, "the judge's verdict did not validate: " + (review.error or "")
        return True, f"still rejected after {state.revision} of {max_revisions} revision cycles"
    check = state.citation_check_for(draft.version)
    if check is not None and not check.passed:
        return True, (f"the citation check still finds {len(check.failures)} unsupported claim(s) after "
                      f"{state.revision} of {max_revisions} revision cycles")
    return True, "the draft was not reviewed"


def citation_summary(report) -> dict | None:
    """The citation check as the gate shows it (Telegram, web, Studio, CLI)."""
    if report is None:
        return None
    return {"draft_version": report.draft_version, "passed": report.passed, "support_rate": report.support_rate,
            "supported": report.supported, "checked": report.checked, "checked_by": report.checked_by,
            "error": report.error,
            "unsupported": [{"sentence": c.sentence[:400], "problems": c.problems[:5]} for c in report.failures][:10],
            "unverifiable": sum(c.status == "unverifiable" for c in report.claims)}


def approval_payload(state, *, thread_id: str, cost_usd: float, tokens: int, max_revisions: int) -> dict:
    """What the human sees at the gate (Telegram, Studio, CLI, web)."""
    draft, review = state.latest_draft, state.latest_review
    if review is not None and review.draft_version != draft.version:
        review = None  # a verdict on an earlier draft says nothing about this one
    escalated, reason = escalation(state, max_revisions=max_revisions)
    research = state.research
    return {
        "thread_id": thread_id,
        "topic": state.topic,
        "requester": state.requester,
        "draft": {"version": draft.version, "title": draft.title, "body": draft.body, "model": draft.model,
                  "prompt": draft.prompt},
        "scores": review.verdict.scores if review and review.verdict else None,
        "flag": review.verdict.flag if review and review.verdict else None,
        "mean": review.mean if review else None,
        "editor_decision": review.decision if review else None,
        "reasoning": review.verdict.reasoning.model_dump() if review and review.verdict else None,
        "citations": [c.model_dump(exclude={"excerpt"}) for c in (research.citations if research else [])],
        "grounded": bool(research and research.grounded),
        "ungrounded_reason": research.ungrounded_reason if research else None,
        "fetch_errors": list(research.fetch_errors) if research else [],
        "citation_check": citation_summary(state.citation_check_for(draft.version)),
        "revision": state.revision,
        "escalated": escalated,
        "escalation_reason": reason,
        "cost_usd": round(cost_usd, 6),
        "tokens": tokens,
        "resume_values": [{"action": "approve"}, {"action": "revise", "feedback": "..."},
                          {"action": "reject", "reason": "..."}],
    }


def payload_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class ResumeValueError(ValueError):
    pass


def parse_resume(value) -> tuple[str, str | None, str]:
    """Accept 'approve' | {'action': 'approve'|'revise'|'reject', 'feedback'|'reason': str, 'reviewer': str}.

    Returns (decision, feedback, reviewer); raises ResumeValueError with what is expected.
    """
    expected = ("resume with 'approve', {'action': 'revise', 'feedback': '...'} or "
                "{'action': 'reject', 'reason': '...'}")
    reviewer = "unknown"
    if isinstance(value, str):
        action, text = value.strip().lower(), None
        if ":" in action:
            action, _, text = value.partition(":")
            action, text = action.strip().lower(), text.strip()
    elif isinstance(value, dict):
        action = str(value.get("action") or value.get("decision") or "").strip().lower()
        text = value.get("feedback") or value.get("reason")
        reviewer = str(value.get("reviewer") or value.get("by") or reviewer)[:200]
    else:
        raise ResumeValueError(f"unsupported resume value {type(value).__name__}: {expected}")
    if action not in {"approve", "revise", "reject"}:
        raise ResumeValueError(f"unknown action {action!r}: {expected}")
    if action == "revise" and not (text and str(text).strip()):
        raise ResumeValueError("revise needs feedback: {'action': 'revise', 'feedback': 'what to change'}")
    return action, (str(text).strip()[:4000] if text else None), reviewer


# What the gate needs from a resume: nothing but the token the approvals ledger issued when the
# decision was claimed. The decision, its text and the reviewer are the ledger's, so a resume
# typed anywhere (Studio, the SDK, a script) cannot decide a gate the ledger did not give it.
NOT_FROM_LEDGER = ("not issued by the approvals ledger: decide through Telegram, the web page, the CLI or a "
                   "Studio/SDK resume by an approver (the server claims it in the ledger); nothing changed")


def gate_token_of(answer) -> str | None:
    return str(answer.get("gate_token")) if isinstance(answer, dict) and answer.get("gate_token") else None


async def ledger_decision(thread_id: str, interrupt_id: str, answer, *, checkpoint_id: str | None,
                          draft_hash: str) -> tuple[str, str | None, str] | None:
    """(decision, feedback, reviewer) the ledger claimed for this interrupt, if `answer` carries
    the token it issued and the gate showed this draft; None for any other resume."""
    from storage import approvals
    from storage.db import get_database

    gate = await approvals.consume_gate_token(await get_database(), thread_id, interrupt_id, gate_token_of(answer),
                                              checkpoint_id, draft_hash=draft_hash)
    if gate is None or gate.decision not in approvals.HUMAN_DECISIONS:
        return None
    text = gate.feedback
    if gate.decision == "reject" and not text:
        text = "rejected"
    return gate.decision, text, gate.decided_by or "unknown"


async def publication_refused(thread_id: str, draft, *, default_policy: str) -> str | None:
    """Why this draft may not be published, or None. The database decides, not the graph state
    (which an approver can edit with update_state): a human approved exactly this text through the
    ledger, or the post's own policy is escalations_only and the Editor approved this draft,
    which the Writer desk wrote, with no human revise asked for the post."""
    from storage import approvals, posts
    from storage.db import get_database

    db = await get_database()
    events = await posts.list_events(db, thread_id)
    written = any(e["kind"] == "draft_written" and (e["detail"] or {}).get("hash") == draft.content_hash
                  for e in events)
    for gate in await approvals.approved_gates(db, thread_id):
        if gate["draft_hash"] == draft.content_hash or (
                gate["draft_hash"] is None and gate["draft_version"] == draft.version and written):
            return None
    policy = (await posts.run_overrides_of(db, thread_id)).get("approval_policy") or default_policy
    if policy == "escalations_only":
        editor_approved = any(
            e["kind"] == "verdict" and (e["detail"] or {}).get("decision") == "approve"
            and (e["detail"] or {}).get("draft_hash") == draft.content_hash for e in events)
        revised = any(e["kind"] == "human_decision" and (e["detail"] or {}).get("decision") == "revise"
                      for e in events)
        if written and editor_approved and not revised:
            return None
    return (f"publish refused: draft v{draft.version} was neither approved by a human through the approvals "
            "ledger nor approved by the Editor under this post's escalations_only policy (a state edit?)")


async def advance_post(thread_id: str, status: str, *, actor: str, reason: str | None = None,
                       detail: dict | None = None, revision: int | None = None,
                       unless_in: tuple[str, ...] = ()) -> None:
    """Keep the posts table in step with the graph (idempotent: a re-run repeats it harmlessly)."""
    from storage import posts
    from storage.db import get_database

    db = await get_database()
    await posts.transition(db, thread_id, status, actor=actor, reason=reason, detail=detail, revision=revision,
                           unless_in=unless_in)


# The settings a run may override in config["configurable"] (the names graphs/ passes to
# setting()): the only keys kept with the post and handed back when recovery resumes the run.
# A whitelist, because configurable also carries the Agent Server's own keys and whatever a
# client sends; tests/test_recover.py checks it against the setting() calls.
RUN_OVERRIDE_SETTINGS = ("approval_policy", "max_revisions", "retrieval_top_k", "research_max_tokens",
                         "writer_max_tokens", "judge_max_attempts", "judge_max_tokens", "research_subquestions",
                         "retrieval_floor", "fetch_max_urls", "plan_max_tokens", "outline_max_tokens",
                         "claims_max_tokens", "claim_check")


def run_overrides(configurable: dict | None) -> dict:
    """The whitelisted per-run overrides in a run's configurable (JSON scalars, None dropped)."""
    return {k: v for k, v in (configurable or {}).items()
            if k in RUN_OVERRIDE_SETTINGS and isinstance(v, (str, int, float, bool))}


async def ensure_post(thread_id: str, *, topic: str, requester: str, source: str, metadata: dict | None = None,
                      configurable: dict | None = None) -> None:
    """The post row, created on the first supervisor visit; with `configurable`, the run's overrides
    are kept with it (once, at start), so a run resumed after a crash runs with them again."""
    from storage import posts
    from storage.db import get_database

    db = await get_database()
    await posts.create_post(db, thread_id, topic, requester, source=source, metadata=metadata,
                            run_overrides=run_overrides(configurable) if configurable is not None else None)


async def post_usage(thread_id: str) -> dict:
    from storage import posts
    from storage.db import get_database

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
    from storage import posts
    from storage.db import get_database

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
    from storage import posts
    from storage.db import get_database

    db = await get_database()
    await posts.record_event(db, thread_id, actor=actor, kind=kind, detail=detail)


async def record_draft(thread_id: str, draft, messages: list[dict]) -> None:
    """The draft's text, model (the adapter that wrote it) and prompt as a row: the training export reads these."""
    from storage import training
    from storage.db import get_database

    await training.record_draft(await get_database(), thread_id=thread_id, version=draft.version, title=draft.title,
                                body=draft.body, content_hash=draft.content_hash, model=draft.model,
                                prompt=draft.prompt, reason=draft.reason, messages=messages)
