"""The supervisor: a deterministic router over typed state (no LLM needed to route), and the rule
that decides whether a draft may be published. Decisions only: the bookkeeping that keeps the posts
table in step with the graph (and the approvals ledger's reads) is graphs/ledger.py's."""
from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel

from agents.editor import next_step_after_review
from agents.models import BudgetStop, CostEstimate, EstimatedStep
from agents.writer import sections_of
from config.run_config import RUN_OVERRIDE_SETTINGS as _RUN_OVERRIDE_SETTINGS
from config.run_config import run_overrides as _run_overrides

Next = Literal["researcher", "writer", "editor", "prepare_approval", "publisher", "finish", "over_budget"]
LLM_DESKS = ("researcher", "writer", "editor")  # the desks a budget stops (the publisher spends nothing)


def over_budget(spent_usd: float, budget_usd: float | None) -> bool:
    """A run with a budget has spent more than it (unset = no budget; spending exactly it is within)."""
    return budget_usd is not None and spent_usd > budget_usd


def route_next(state, *, max_revisions: int, policy: str, budget_usd: float | None = None,
               rubric_judge: bool = True) -> Next:
    """Pick the next desk from the state and the run's fixed settings alone, so a replay after a
    crash picks the same one. rubric_judge False: a draft that passed its citation check goes to a
    human unjudged (the Editor asks no verdict).
    Over budget (state.spent_usd, read at this desk boundary), an LLM desk the run would start on
    its own is not started: "over_budget" (the draft to a human, with the spend). Work a human asked
    for at the gate (a revise, an edit's citation check) is done; the stop applies after it."""
    step = _route(state, max_revisions=max_revisions, policy=policy, rubric_judge=rubric_judge)
    if step in LLM_DESKS and not _asked_by_human(state) and over_budget(state.spent_usd, budget_usd):
        return "over_budget"
    return step


def next_desk(state, *, max_revisions: int, policy: str, rubric_judge: bool = True) -> Next:
    """The desk the run goes to when no budget stops it (what a budget stop stopped before)."""
    return _route(state, max_revisions=max_revisions, policy=policy, rubric_judge=rubric_judge)


def _asked_by_human(state) -> bool:
    """The next desk is what a human's answer at the gate asked for: a revise of the latest draft,
    or the citation check of a human's edit."""
    draft, decision = state.latest_draft, state.latest_decision
    if draft is None:
        return False
    if decision is not None and decision.draft_version == draft.version:
        return True
    return draft.reason == "human_edit"


def budget_stop(state, *, budget_usd: float, usage: dict, stopped_before: str) -> BudgetStop:
    draft = state.latest_draft
    return BudgetStop(spent_usd=round(float(usage.get("cost_usd") or state.spent_usd), 6), budget_usd=budget_usd,
                      tokens=int(usage.get("tokens") or 0), llm_calls=int(usage.get("llm_calls") or 0),
                      stopped_before=stopped_before, draft_version=draft.version if draft else None)


def budget_reason(stop: BudgetStop) -> str:
    """Why the gate shows this draft (CLI, Telegram, web, Studio): the spend and what it stopped."""
    return (f"over budget: this run has spent ${stop.spent_usd:.4f} of its ${stop.budget_usd:.4f} budget "
            f"({stop.llm_calls} LLM calls, {stop.tokens} tokens); stopped before the {stop.stopped_before}. "
            "Approve to publish this draft as it is, edit it, revise (spends more) or reject")


def _route(state, *, max_revisions: int, policy: str, rubric_judge: bool = True) -> Next:
    if state.outcome != "pending":
        return "finish"
    if state.research is None:
        return "researcher"
    draft, review, decision = state.latest_draft, state.latest_review, state.latest_decision
    if draft is None:
        return "writer"
    if decision is not None and decision.draft_version == draft.version:
        # A human answered about this draft (an edit makes the next version: never about this one).
        return {"approve": "publisher", "revise": "writer", "reject": "finish"}[decision.decision]
    if draft.reason == "human_edit":
        # A human's own text: the Editor's citation check only (no judge, no automatic revision);
        # then published at once (approve_with_edits, check passed) or shown at the gate again.
        check = state.citation_check_for(draft.version)
        if check is None:
            return "editor"
        approved = (decision is not None and decision.decision == "approve_with_edits"
                    and decision.edited_version == draft.version)
        return "publisher" if approved and check.passed else "prepare_approval"
    if review is None or review.draft_version != draft.version:
        check = state.citation_check_for(draft.version)
        if check is None:
            return "editor"
        if check.passed:
            return "editor" if rubric_judge else "prepare_approval"
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
    if draft.reason == "human_edit":
        check = state.citation_check_for(draft.version)
        if check is None or check.passed:
            return False, None
        return True, (f"the edit by {draft.edited_by or 'a human'} (v{draft.version}) has {len(check.failures)} "
                      "claim(s) the citation check does not find supported: approve to publish it anyway, "
                      "edit again, revise or reject")
    stop = state.budget_stop
    if stop is not None and stop.draft_version == draft.version:
        return True, budget_reason(stop)
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
    return True, "no rubric verdict on this draft (the judge was not asked): a human decides"


# --- the estimate before a run ---------------------------------------------------------------

PROMPT_OVERHEAD_TOKENS = 400  # a prompt's instructions and framing, besides the notes and drafts it carries
QUESTION_TOKENS = 60  # a topic or sub-question
FEEDBACK_TOKENS = 250  # the Editor's (or a human's) feedback in a revision prompt


def estimate_run(prices: dict[str, tuple[str, float, float]], *, limits: dict) -> CostEstimate:
    """The cost and time of one post before it runs, from the price of each role's first route
    (model, USD per 1M in, per 1M out) and the run's limits (the settings named below, per-run
    overrides applied). Calls per post: researcher plan + HyDE (+ notes when ungrounded), writer
    outline (none when it comes from the plan) + draft, editor claims + judge; the draft, claims and judge again per revision cycle,
    the judge up to judge_max_attempts times per draft. Each call at its max_tokens; prompt sizes
    from the notes (retrieval_top_k chunks of chunk_tokens) and the draft they carry."""
    notes = limits["retrieval_top_k"] * limits["chunk_tokens"]
    draft = limits["writer_max_tokens"]
    drafts_max = limits["max_revisions"] + 1
    plan = 1 if limits["research_subquestions"] > 0 else 0
    hyde = 1 if limits["retrieval_hyde"] else 0
    claims = 1 if limits["claim_check"] else 0
    # An outline from the plan makes no call, unless the plan had too few questions.
    outline_min = 0 if limits.get("outline_source") == "plan" else 1
    judged = 0 if limits.get("rubric_judge") is False else 1
    rows = [  # step, role, calls min, calls max, tokens in, tokens out (per call)
        ("researcher.plan", "researcher", plan, plan, PROMPT_OVERHEAD_TOKENS + QUESTION_TOKENS, limits["plan_max_tokens"]),
        ("researcher.hyde", "hyde", hyde, hyde, PROMPT_OVERHEAD_TOKENS + QUESTION_TOKENS, limits["hyde_max_tokens"]),
        ("researcher.notes", "researcher", 0, 1, PROMPT_OVERHEAD_TOKENS + QUESTION_TOKENS, limits["research_max_tokens"]),
        ("writer.outline", "writer", outline_min, 1, PROMPT_OVERHEAD_TOKENS + notes, limits["outline_max_tokens"]),
        ("writer.draft", "writer", 1, drafts_max,
         PROMPT_OVERHEAD_TOKENS + notes + limits["outline_max_tokens"] + draft + FEEDBACK_TOKENS, draft),
        ("editor.claims", "judge", claims, claims * drafts_max, PROMPT_OVERHEAD_TOKENS + notes + draft,
         limits["claims_max_tokens"]),
        ("editor.judge", "judge", judged, judged * drafts_max * limits["judge_max_attempts"],
         PROMPT_OVERHEAD_TOKENS + notes + draft,
         limits["judge_max_tokens"]),
    ]
    steps: list[EstimatedStep] = []
    for step, role, lo, hi, t_in, t_out in rows:
        model, p_in, p_out = prices.get(role) or prices.get("writer") or ("?", 0.0, 0.0)
        steps.append(EstimatedStep(step=step, role=role, model=model, calls_min=lo, calls_max=hi, tokens_in=t_in,
                                   tokens_out=t_out, usd_per_call=(t_in * p_in + t_out * p_out) / 1_000_000))
    per_call_s = {s.step: s.tokens_in / limits["prompt_tokens_per_s"] + s.tokens_out / limits["tokens_per_s"]
                  for s in steps}
    return CostEstimate(
        usd_min=round(sum(s.calls_min * s.usd_per_call for s in steps), 6),
        usd_max=round(sum(s.calls_max * s.usd_per_call for s in steps), 6),
        seconds_min=round(sum(s.calls_min * per_call_s[s.step] for s in steps), 1),
        seconds_max=round(sum(s.calls_max * per_call_s[s.step] for s in steps), 1),
        llm_calls_min=sum(s.calls_min for s in steps), llm_calls_max=sum(s.calls_max for s in steps),
        budget_usd=limits.get("budget_usd"), steps=steps)


# The settings estimate_run reads (graphs/ passes each from the run's RunConfig when it is an override).
ESTIMATE_LIMITS = ("retrieval_top_k", "writer_max_tokens", "max_revisions", "research_subquestions", "retrieval_hyde",
                   "claim_check", "plan_max_tokens", "hyde_max_tokens", "research_max_tokens", "outline_max_tokens",
                   "claims_max_tokens", "judge_max_tokens", "judge_max_attempts", "outline_source",
                   "rubric_judge")


def citation_summary(report) -> dict | None:
    """The citation check as the gate shows it (Telegram, web, Studio, CLI)."""
    if report is None:
        return None
    return {"draft_version": report.draft_version, "passed": report.passed, "support_rate": report.support_rate,
            "supported": report.supported, "checked": report.checked, "checked_by": report.checked_by,
            "error": report.error,
            "unsupported": [{"sentence": c.sentence[:400], "problems": c.problems[:5]} for c in report.failures][:10],
            "unverifiable": sum(c.status == "unverifiable" for c in report.claims)}


def approval_payload(state, *, thread_id: str, cost_usd: float, tokens: int, max_revisions: int,
                     budget_usd: float | None = None) -> dict:
    """What the human sees at the gate (Telegram, Studio, CLI, web)."""
    draft, review = state.latest_draft, state.latest_review
    if review is not None and review.draft_version != draft.version:
        review = None  # a verdict on an earlier draft says nothing about this one
    escalated, reason = escalation(state, max_revisions=max_revisions)
    research = state.research
    payload = {
        "thread_id": thread_id,
        "topic": state.topic,
        "requester": state.requester,
        "draft": {"version": draft.version, "title": draft.title, "body": draft.body, "model": draft.model,
                  "prompt": draft.prompt, "edited_by": draft.edited_by},
        "sections": [sec.heading for sec in sections_of(draft.body)],  # what a revise may name
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
        "budget_usd": budget_usd,
        "budget_stop": (state.budget_stop.model_dump() if state.budget_stop is not None
                        and state.budget_stop.draft_version == draft.version else None),
        "cost_estimate": state.cost_estimate.model_dump(exclude={"steps"}) if state.cost_estimate else None,
        "resume_values": list(RESUME_VALUES),
    }
    payload.update(hitl_request(payload))
    return payload


# The resume values the gate understands (besides the HITL / Agent Inbox responses, hitl_request).
RESUME_VALUES = (
    {"action": "approve"},
    {"action": "revise", "feedback": "...", "section": "(optional) one section heading"},
    {"action": "reject", "reason": "..."},
    {"action": "edit", "draft": "<the full Markdown: '# Title' line, then the body>"},
    {"action": "approve_with_edits", "draft": "<the full Markdown>"},
)
HITL_ACTION = "publish_post"  # action_request.action of our gate in the Agent Inbox shape
HITL_CONFIG = {"allow_accept": True, "allow_edit": True, "allow_respond": True, "allow_ignore": True}


def hitl_request(payload: dict) -> dict:
    """The LangGraph HITL / Agent Inbox HumanInterrupt keys of the gate, on top of our own payload
    (agent-inbox reads an interrupt value carrying action_request + config as one HumanInterrupt):
    action_request {action, args}, config {allow_accept, allow_edit, allow_respond, allow_ignore},
    description. args.draft is the draft as Markdown, the one field an edit changes. The answers
    (HumanResponse {type, args}) are mapped by parse_answer: accept -> approve, edit -> edit,
    response -> revise (args: the feedback), ignore -> reject."""
    d = payload["draft"]
    lines = [f"**Draft v{d['version']}: {d['title']}** (topic: {payload['topic']})"]
    if payload.get("escalated"):
        lines.append(f"ESCALATED: {payload.get('escalation_reason')}")
    if payload.get("scores"):
        lines.append("Editor: " + ", ".join(f"{k} {v}" for k, v in payload["scores"].items())
                     + f"; mean {payload['mean']:.2f}, {str(payload.get('editor_decision')).upper()}")
    check = payload.get("citation_check")
    if check:
        rate = "-" if check.get("support_rate") is None else f"{check['support_rate']:.0%}"
        lines.append(f"Citation check: {check['supported']}/{check['checked']} supported ({rate}), "
                     + ("passed" if check["passed"] else "UNSUPPORTED CLAIMS"))
        lines += [f"- unsupported: {c['sentence'][:200]}" for c in (check.get("unsupported") or [])[:5]]
    if not payload.get("grounded"):
        lines.append(f"UNGROUNDED: {payload.get('ungrounded_reason') or 'no sources'}")
    lines.append("Accept publishes this draft. Edit the draft field to make your text the next version (its "
                 "citations are checked, then it is shown again). Respond with feedback to send it back to the "
                 "Writer. Ignore rejects it.")
    return {"action_request": {"action": HITL_ACTION, "args": {"draft": f"# {d['title']}\n\n{d['body']}"}},
            "config": dict(HITL_CONFIG), "description": "\n\n".join(lines)}


def payload_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class ResumeValueError(ValueError):
    pass


class ResumeAnswer(BaseModel):
    """A human's answer at the gate, whatever shape it came in."""

    action: Literal["approve", "revise", "reject", "edit", "approve_with_edits"]
    text: str | None = None  # revise: the feedback; reject: the reason
    reviewer: str = "unknown"
    draft: str | None = None  # edit / approve_with_edits: the full Markdown
    section: str | None = None  # revise: the one section heading to rewrite


HITL_TYPES = {"accept": "approve", "edit": "edit", "response": "revise", "ignore": "reject"}
_EXPECTED = ("resume with 'approve', {'action': 'revise', 'feedback': '...', 'section': '(optional)'}, "
             "{'action': 'reject', 'reason': '...'}, {'action': 'edit' | 'approve_with_edits', 'draft': '<Markdown>'} "
             "or an Agent Inbox response [{'type': 'accept' | 'edit' | 'response' | 'ignore', 'args': ...}]")


def _hitl_answer(item: dict) -> ResumeAnswer:
    """A HumanResponse {type, args}: accept, edit (args: an ActionRequest {action, args: {draft}}),
    response (args: the feedback text), ignore."""
    kind = str(item.get("type") or "").strip().lower()
    if kind not in HITL_TYPES:
        raise ResumeValueError(f"unknown response type {kind!r}: {_EXPECTED}")
    args = item.get("args")
    if kind == "edit":
        edited = args.get("args") if isinstance(args, dict) and isinstance(args.get("args"), dict) else args
        draft = edited.get("draft") if isinstance(edited, dict) else None
        if not isinstance(draft, str) or not draft.strip():
            raise ResumeValueError("an edit response needs args {'action': ..., 'args': {'draft': '<Markdown>'}}")
        return ResumeAnswer(action="edit", draft=draft)
    if kind == "response":
        text = args if isinstance(args, str) else (args or {}).get("feedback") if isinstance(args, dict) else None
        if not (text and str(text).strip()):
            raise ResumeValueError("a response needs the feedback for the Writer as its args")
        section = args.get("section") if isinstance(args, dict) else None
        return ResumeAnswer(action="revise", text=str(text).strip()[:4000],
                            section=str(section).strip()[:200] if section else None)
    if kind == "ignore":
        return ResumeAnswer(action="reject", text="ignored in the inbox")
    return ResumeAnswer(action="approve")


def parse_answer(value) -> ResumeAnswer:
    """Accept 'approve' | 'revise: text' | {'action': ..., 'feedback'|'reason': str, 'draft': str,
    'section': str, 'reviewer': str} | a HITL / Agent Inbox response ({'type': ..., 'args': ...}, or
    a one-item list of it, as agent-inbox sends). Raises ResumeValueError with what is expected."""
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict):
            raise ResumeValueError(f"a list answer holds exactly one response: {_EXPECTED}")
        value = value[0]
    if isinstance(value, dict) and "type" in value and not (value.get("action") or value.get("decision")):
        return _hitl_answer(value)
    reviewer, draft, section = "unknown", None, None
    if isinstance(value, str):
        action, text = value.strip().lower(), None
        if ":" in action:
            action, _, text = value.partition(":")
            action, text = action.strip().lower(), text.strip()
    elif isinstance(value, dict):
        action = str(value.get("action") or value.get("decision") or "").strip().lower()
        text = value.get("feedback") or value.get("reason")
        reviewer = str(value.get("reviewer") or value.get("by") or reviewer)[:200]
        draft = value.get("draft")
        section = value.get("section")
    else:
        raise ResumeValueError(f"unsupported resume value {type(value).__name__}: {_EXPECTED}")
    if action not in HUMAN_ACTIONS:
        raise ResumeValueError(f"unknown action {action!r}: {_EXPECTED}")
    if action == "revise" and not (text and str(text).strip()):
        raise ResumeValueError("revise needs feedback: {'action': 'revise', 'feedback': 'what to change'}")
    if action in ("edit", "approve_with_edits") and not (isinstance(draft, str) and draft.strip()):
        raise ResumeValueError(f"{action} needs the edited draft: {{'action': '{action}', 'draft': '<Markdown>'}}")
    return ResumeAnswer(action=action, text=str(text).strip()[:4000] if text and action in ("revise", "reject") else None,
                        reviewer=reviewer, draft=draft if action in ("edit", "approve_with_edits") else None,
                        section=str(section).strip()[:200] if section and action == "revise" else None)


HUMAN_ACTIONS = ("approve", "revise", "reject", "edit", "approve_with_edits")


def parse_resume(value) -> tuple[str, str | None, str]:
    """(decision, feedback, reviewer) of an answer (parse_answer without the draft and section)."""
    answer = parse_answer(value)
    return answer.action, answer.text, answer.reviewer


# What the gate needs from a resume: nothing but the token the approvals ledger issued when the
# decision was claimed. The decision, its text and the reviewer are the ledger's, so a resume
# typed anywhere (Studio, the SDK, a script) cannot decide a gate the ledger did not give it.
NOT_FROM_LEDGER = ("not issued by the approvals ledger: decide through Telegram, the web page, the CLI or a "
                   "Studio/SDK resume by an approver (the server claims it in the ledger); nothing changed")


def gate_token_of(answer) -> str | None:
    return str(answer.get("gate_token")) if isinstance(answer, dict) and answer.get("gate_token") else None


def publication_refusal(draft, *, events: list[dict], approved_gates: list[dict], policy: str) -> str | None:
    """Why this draft may not be published, or None, from the database's record (the post's events,
    its approved gates, its policy), not the graph state (which an approver can edit with
    update_state): a human approved exactly this text through the ledger, or the post's policy is
    escalations_only and the Editor approved this draft, which the Writer desk wrote, with no human
    revise asked for the post."""
    written = any(e["kind"] == "draft_written" and (e["detail"] or {}).get("hash") == draft.content_hash
                  for e in events)
    for gate in approved_gates:
        if gate["decision"] == "approve_with_edits":
            if gate["edited_hash"] == draft.content_hash:
                return None  # the very text the human edited and approved
            continue
        if gate["draft_hash"] == draft.content_hash or (
                gate["draft_hash"] is None and gate["draft_version"] == draft.version and written):
            return None
    if policy == "escalations_only":
        editor_approved = any(
            e["kind"] == "verdict" and (e["detail"] or {}).get("decision") == "approve"
            and (e["detail"] or {}).get("draft_hash") == draft.content_hash for e in events)
        revised = any(e["kind"] == "human_decision" and (e["detail"] or {}).get("decision") in
                      ("revise", "edit", "approve_with_edits") for e in events)
        if written and editor_approved and not revised:
            return None
    return (f"publish refused: draft v{draft.version} was neither approved by a human through the approvals "
            "ledger nor approved by the Editor under this post's escalations_only policy (a state edit?)")


# The run-override whitelist and its reader are config.run_config's (RunConfig); these names stay
# importable from here for code written before the move.
RUN_OVERRIDE_SETTINGS = _RUN_OVERRIDE_SETTINGS
run_overrides = _run_overrides
