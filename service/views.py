"""Pure view models of a post, shared by every channel (no I/O, no channel library): what a run's
progress line says, what the approval gate shows. A channel only formats them (plain text for the
CLI, HTML for Telegram, a Jinja2 template for the web page)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agents.models import CostEstimate

_STARTS = {"start_research": "researching...", "start_drafting": "drafting...", "start_editing": "checking the draft...",
           "start_publishing": "publishing...", "prepare_approval": "handing the draft to a human"}


def progress_line(node: str, update: Any) -> str | None:
    """One progress line of the in-process run (the CLI), from a node's state update; None: nothing to say."""
    if node in _STARTS:
        return _STARTS[node]
    if not isinstance(update, dict):
        return None
    if node == "supervisor" and update.get("cost_estimate"):
        return CostEstimate.model_validate(update["cost_estimate"]).summary()
    if node == "over_budget" and update.get("budget_stop"):
        stop = update["budget_stop"]
        return (f"OVER BUDGET: spent ${stop['spent_usd']:.4f} of ${stop['budget_usd']:.4f}, stopped before the "
                f"{stop['stopped_before']}" + (" -> to a human" if stop.get("draft_version") else " (no draft: failed)"))
    if node == "plan" and update.get("plan"):
        p = update["plan"]
        if p.get("skipped") or p.get("error"):
            return f"plan: topic only ({(p.get('skipped') or p.get('error') or '')[:120]})"
        return f"plan: {len(p['sub_questions'])} sub-questions" + (f", {len(p['urls'])} URLs" if p.get("urls") else "")
    if node == "retrieve" and update.get("retrieval"):
        r = update["retrieval"]
        if r.get("skipped"):
            return f"retrieval skipped: {r['skipped']}"
        return (f"retrieval: {len(r['candidates'])} notes above the floor {r['floor']:.2f}"
                + (f", {len(r['below_floor'])} below" if r.get("below_floor") else ""))
    if node == "fetch" and update.get("fetched"):
        f = update["fetched"]
        bad = [x for x in f if not x["ok"]]
        return f"fetched {len(f) - len(bad)} of {len(f)} URLs" + (
            "; not fetched: " + "; ".join(f"{x['url'][:80]} ({(x['error'] or '')[:80]})" for x in bad) if bad else "")
    if node == "gather" and update.get("research"):
        r = update["research"]
        return (f"research notes (grounded, {len(r['citations'])} sources)" if r["grounded"] else
                f"research notes UNGROUNDED: {(r.get('ungrounded_reason') or 'no corpus match')[:160]}")
    if node == "outline" and update.get("outlines"):
        o = update["outlines"][-1]
        if o.get("error"):
            return "outline: none (invalid), drafting from the notes"
        return f"outline: {len(o['sections'])} sections" + (" (the plan's questions)" if o.get("source") == "plan" else "")
    if node == "check_citations" and update.get("citation_checks"):
        c = update["citation_checks"][-1]
        rate = "-" if c["support_rate"] is None else f"{c['support_rate']:.0%}"
        bad = sum(1 for x in c["claims"] if x["status"] == "unsupported")
        return (f"citation check v{c['draft_version']}: support {rate} ({c['supported']}/{c['checked']}), "
                + ("passed" if c["passed"] else f"{bad} unsupported -> back to the Writer"))
    if node == "write" and update.get("drafts"):
        d = update["drafts"][-1]
        return f"draft v{d['version']} ({len(d['body'].split())} words, {d['reason']})"
    if node == "judge" and update.get("reviews"):
        r = update["reviews"][-1]
        if r["verdict"]:
            v = r["verdict"]
            return (f"verdict {r['decision'].upper()} on v{r['draft_version']}: ta={v['technical_accuracy']} "
                    f"cal={v['calibration']} depth={v['mechanistic_depth']} aud={v['audience_calibration']} "
                    f"mean={r['mean']:.2f} flag={v['flag']}")
        return f"verdict INVALID after {r['attempts']} attempts: {(r.get('error') or '')[:120]}"
    if node == "publish" and update.get("publication"):
        return f"published -> {update['publication']['location']}"
    if update.get("outcome") == "failed":
        return f"FAILED: {update.get('error')}"
    return None


def retry_refused_text(err) -> str:
    """Why a channel of the Agent Server cannot retry a post (an operations.NothingToRetry)."""
    if err.why == "unknown":
        return f"This post did not run on this server; retry it where it ran: newsroom retry {err.thread_id}"
    if err.why == "refused":
        return f"{err}. Nothing changed."
    nxt = f", next: {', '.join(err.next)}" if err.next else ""
    return f"Not failed ({err.outcome or 'no run yet'}{nxt}). Nothing to retry."


# --- the approval gate ---------------------------------------------------------------------------------

class Verdict(StrEnum):
    """What the Editor's rubric says about the waiting draft, or why it says nothing."""

    SCORED = "scored"
    HUMAN_EDIT = "human_edit"      # a human's edit: citation check only, no rubric verdict
    OVER_BUDGET = "over_budget"    # the run stopped over budget before the Editor
    INVALID = "invalid"            # the judge's verdict did not validate
    NOT_JUDGED = "not_judged"      # the citation check failed (or the rubric judge is off): no verdict


@dataclass(frozen=True)
class GateView:
    """The approval gate as every channel shows it, from the interrupt's payload."""

    thread_id: str
    version: Any
    title: str
    body: str
    edited_by: str | None
    escalated: bool
    escalation_reason: str | None
    sections: list[str]
    topic: str
    requester: str
    verdict: Verdict
    scores: dict
    mean: float | None
    flag: Any
    editor_decision: Any
    stopped_before: str | None
    citation_check: dict | None
    ungrounded_reason: str | None
    fetch_errors: list = field(default_factory=list)
    citations: list = field(default_factory=list)
    grounded: bool = False
    cost_usd: float = 0.0
    budget_usd: float | None = None
    tokens: int = 0
    revision: int = 0

    @classmethod
    def of(cls, payload: dict, thread_id: str | None = None) -> GateView:
        d = payload.get("draft") or {}
        scores = payload.get("scores") or {}
        stop = payload.get("budget_stop") or {}
        if scores:
            verdict = Verdict.SCORED
        elif d.get("edited_by"):
            verdict = Verdict.HUMAN_EDIT
        elif stop and payload.get("editor_decision") is None:
            verdict = Verdict.OVER_BUDGET
        elif payload.get("editor_decision") == "invalid":
            verdict = Verdict.INVALID
        else:
            verdict = Verdict.NOT_JUDGED
        budget = payload.get("budget_usd")
        return cls(
            thread_id=str(thread_id or payload.get("thread_id") or ""), version=d.get("version"),
            title=str(d.get("title", "")), body=str(d.get("body", "")), edited_by=d.get("edited_by") or None,
            escalated=bool(payload.get("escalated")), escalation_reason=payload.get("escalation_reason"),
            sections=[str(h) for h in payload.get("sections") or []], topic=str(payload.get("topic", "")),
            requester=str(payload.get("requester", "")), verdict=verdict, scores=dict(scores),
            mean=payload.get("mean"), flag=payload.get("flag"), editor_decision=payload.get("editor_decision"),
            stopped_before=stop.get("stopped_before"), citation_check=payload.get("citation_check") or None,
            ungrounded_reason=payload.get("ungrounded_reason") or None, fetch_errors=list(payload.get("fetch_errors") or []),
            citations=list(payload.get("citations") or []), grounded=bool(payload.get("grounded")),
            cost_usd=float(payload.get("cost_usd") or 0), budget_usd=float(budget) if budget is not None else None,
            tokens=int(payload.get("tokens") or 0), revision=int(payload.get("revision") or 0))

    @property
    def unsupported(self) -> list[dict]:
        return list((self.citation_check or {}).get("unsupported") or [])
