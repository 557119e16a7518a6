"""What the bot says, as Telegram HTML (pure: no I/O): message splitting at Telegram's limit, the
approval message (service/views.GateView rendered), the buttons and their callback data, the
progress message of a run, one line per finished desk."""
from __future__ import annotations

import html
from typing import Any

from pydantic import BaseModel, Field
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from service.views import GateView, Verdict
from tools.redaction import public_reason

TEXT_LIMIT = 4096  # Telegram's limit per message, in UTF-16 code units
CALLBACK_PREFIX = "nr"
BUTTON_CODES = {"a": "approve", "v": "revise", "x": "reject", "e": "edit", "w": "approve_with_edits",
                "t": "schedule"}  # t: "⏰ Publish at…" (service/telegram/schedule.py)
ACTION_CODES = {v: k for k, v in BUTTON_CODES.items()}
# --- text helpers (pure) ------------------------------------------------------------------------------

def tg_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split at paragraph, then line, then word boundaries so every piece fits one message."""
    if tg_len(text) <= limit:
        return [text]
    pieces: list[str] = []
    rest = text
    while tg_len(rest) > limit:
        window = rest[:limit]
        while tg_len(window) > limit:  # astral characters count twice
            window = window[:-1]
        cut = max(window.rfind("\n\n"), -1)
        if cut < limit // 3:
            cut = window.rfind("\n")
        if cut < limit // 3:
            cut = window.rfind(" ")
        if cut < limit // 3:
            cut = len(window)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest.strip():
        pieces.append(rest)
    return [p for p in pieces if p]


def esc(value: Any) -> str:
    return html.escape(str(value), quote=False)


SCORE_LABELS = {"technical_accuracy": "accuracy", "calibration": "calibration",
                "mechanistic_depth": "depth", "audience_calibration": "audience"}


def gate_summary(payload: dict, *, max_citations: int = 10) -> str:
    """The approval message (HTML): title, scores, citations, cost; the draft goes before it."""
    g = GateView.of(payload)
    lines = [f"<b>Draft v{esc(g.version)} ready for approval</b>: {esc(g.title)}"]
    if g.edited_by:
        lines.append(f"✍️ edited by {esc(g.edited_by)}")
    if g.escalated:
        lines.append(f"⚠️ <b>ESCALATED</b>: {esc(g.escalation_reason or 'needs a human')}")
    lines.append(f"topic: {esc(g.topic)} · requested by {esc(g.requester)}")
    if g.verdict == Verdict.SCORED:
        s = " · ".join(f"{SCORE_LABELS.get(k, k)} {v}" for k, v in g.scores.items())
        lines.append(f"Editor: {s} — mean {g.mean:.2f}, flag {esc(g.flag)}, "
                     f"{esc(str(g.editor_decision or '').upper())}" if g.mean is not None else f"Editor: {s}")
    else:
        lines.append({
            Verdict.HUMAN_EDIT: "Editor: a human's edit — citation check only, no rubric verdict",
            Verdict.OVER_BUDGET: f"Editor: not reviewed (the run stopped over budget before the {esc(g.stopped_before)})",
            Verdict.INVALID: "Editor: no valid verdict (the judge's output did not validate)",
            Verdict.NOT_JUDGED: "Editor: not judged (see the citation check)",
        }[g.verdict])
    if g.citation_check:
        lines.append(citation_line(g.citation_check))
        for bad in g.unsupported[:3]:
            lines.append(f"  ✗ “{esc(str(bad.get('sentence', ''))[:160])}”: {esc('; '.join(bad.get('problems') or [])[:200])}")
    if g.ungrounded_reason:
        lines.append(f"⚠️ Ungrounded: {esc(str(g.ungrounded_reason)[:300])}")
    for err in g.fetch_errors[:5]:
        lines.append(f"⚠️ Not fetched: {esc(str(err)[:200])}")
    if g.citations:
        lines.append(f"Sources ({'grounded' if g.grounded else 'ungrounded'}):")
        for c in g.citations[:max_citations]:
            where = f" — {c.get('heading')}" if c.get("heading") else ""
            lines.append(f"  [{esc(c.get('n'))}] {esc(str(c.get('source_title', ''))[:120])}{esc(str(where)[:120])}")
        if len(g.citations) > max_citations:
            lines.append(f"  … and {len(g.citations) - max_citations} more")
    else:
        lines.append("Sources: none (UNGROUNDED — verify every claim)")
    lines.append(f"Cost: ${g.cost_usd:.4f}"
                 + (f" of a ${g.budget_usd:.4f} budget" if g.budget_usd is not None else "")
                 + f" · {g.tokens} tokens · revision cycles {g.revision}")
    lines.append(f"thread <code>{esc(g.thread_id)}</code>")
    return "\n".join(lines)


def citation_line(check: dict) -> str:
    """'Citations: 5/6 supported (83%), passed' — the support rate the gate and progress show."""
    rate = check.get("support_rate")
    if rate is None:
        body = "nothing cited to check"
    else:
        body = f"{check.get('supported')}/{check.get('checked')} supported ({rate:.0%})"
    verdict = "passed" if check.get("passed") else "UNSUPPORTED CLAIMS"
    extra = f", {check['unverifiable']} unverifiable" if check.get("unverifiable") else ""
    by = f" · checked by {esc(check.get('checked_by'))}" if check.get("checked_by") else ""
    err = " · claim check failed, rules only" if check.get("error") else ""
    return f"Citations: {body}{extra}, {verdict}{by}{err}"


def gate_buttons(gate_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[
        InlineKeyboardButton("✅ Approve", callback_data=f"{CALLBACK_PREFIX}:a:{gate_id}"),
        InlineKeyboardButton("✏️ Revise", callback_data=f"{CALLBACK_PREFIX}:v:{gate_id}"),
        InlineKeyboardButton("❌ Reject", callback_data=f"{CALLBACK_PREFIX}:x:{gate_id}"),
    ], [
        InlineKeyboardButton("📝 Edit", callback_data=f"{CALLBACK_PREFIX}:e:{gate_id}"),
        InlineKeyboardButton("📝 Approve with edits", callback_data=f"{CALLBACK_PREFIX}:w:{gate_id}"),
    ], [
        InlineKeyboardButton("⏰ Publish at…", callback_data=f"{CALLBACK_PREFIX}:t:{gate_id}"),
    ]])


SECTION_LINE = "section:"


def revise_reply(text: str) -> tuple[str, str | None]:
    """(feedback, section) of a revise reply: a first line "section: HEADING" names the one section."""
    first, _, rest = text.strip().partition("\n")
    if first.strip().lower().startswith(SECTION_LINE):
        return rest.strip(), first.strip()[len(SECTION_LINE):].strip() or None
    return text, None


class ButtonPress(BaseModel):
    action: str
    gate_id: str


def parse_button(data: str | None) -> ButtonPress | None:
    parts = (data or "").split(":")
    if len(parts) != 3 or parts[0] != CALLBACK_PREFIX or parts[1] not in BUTTON_CODES or not parts[2].isalnum():
        return None
    return ButtonPress(action=BUTTON_CODES[parts[1]], gate_id=parts[2])


def who(user) -> str:
    name = f"@{user.username}" if getattr(user, "username", None) else (getattr(user, "full_name", "") or "someone")
    return f"{name} (telegram {user.id})"


# --- progress of one run ------------------------------------------------------------------------------

DESK_STARTS = {"start_research": "🔎 Researcher: researching…", "start_drafting": "✍️ Writer: drafting…",
               "start_editing": "🧑‍⚖️ Editor: reviewing…", "start_publishing": "📣 Publisher: publishing…"}


class Progress(BaseModel):
    """The one progress message of a run: a line per finished desk, plus what runs now."""

    header: str
    done: list[str] = Field(default_factory=list)
    current: str | None = None

    def render(self) -> str:
        body = "\n".join([self.header, *self.done] + ([self.current] if self.current else []))
        return body if tg_len(body) <= TEXT_LIMIT else body[-(TEXT_LIMIT - 10):]

    def on_part(self, event: str, data: Any) -> bool:
        """Fold one stream part in; True if the message should change."""
        if not isinstance(data, dict):
            return False
        before = self.render()
        if "|" in event:  # a desk subgraph's own step, e.g. "updates|writer:<task id>"
            for node in data:
                if node in DESK_STARTS:
                    self.current = DESK_STARTS[node]
        else:
            for node, update in data.items():
                line = describe_desk(node, update)
                if line:
                    self.done.append(line)
                    self.current = None
        return self.render() != before

    def finish(self, line: str) -> None:
        self.current = None
        self.done.append(line)


def describe_desk(node: str, update: Any) -> str | None:
    """One line for a finished desk, from its state update (plain JSON from the server)."""
    if not isinstance(update, dict):
        return None
    try:
        if node == "researcher" and update.get("research"):
            r = update["research"]
            n = len(r.get("citations") or [])
            return f"✓ Research: {n} source{'s' if n != 1 else ''}" if r.get("grounded") else \
                "✓ Research: UNGROUNDED (no corpus match)"
        if node == "writer" and update.get("drafts"):
            d = update["drafts"][-1]
            why = {"editor_feedback": f" — revision {update.get('revision', '?')} after the Editor's notes",
                   "citation_feedback": f" — revision {update.get('revision', '?')} after the citation check",
                   "human_feedback": " — revised on your feedback",
                   "human_edit": f" — edited by {esc(d.get('edited_by') or 'a human')}"}.get(d.get("reason"), "")
            return f"✓ Draft v{d['version']}: {len(str(d.get('body', '')).split())} words{why}"
        if node == "human_approval" and update.get("drafts"):
            d = update["drafts"][-1]
            return f"✓ Edit: draft v{d['version']} by {esc(d.get('edited_by') or 'a human')}"
        if node == "editor" and update.get("citation_checks") and (update.get("drafts") or [{}])[-1].get(
                "reason") == "human_edit":
            c = update["citation_checks"][-1]
            return f"✓ {citation_line(c | {'unverifiable': 0})} on the edit v{c['draft_version']}"
        if node == "editor" and update.get("citation_checks") and not any(
                r.get("draft_version") == update["citation_checks"][-1].get("draft_version")
                for r in update.get("reviews") or []):
            c = update["citation_checks"][-1]
            return f"✓ {citation_line(c | {'unverifiable': 0})} on v{c['draft_version']} — back to the Writer"
        if node == "editor" and update.get("reviews"):
            r = update["reviews"][-1]
            if r.get("decision") == "invalid":
                return f"✓ Editor: verdict invalid on v{r['draft_version']}"
            verdict = "APPROVE" if r["decision"] == "approve" else "REJECT, back to the Writer"
            mean = r.get("mean")
            return f"✓ Editor: {verdict} (mean {mean:.2f})" if mean is not None else f"✓ Editor: {verdict}"
        if node == "prepare_approval":
            return "⚠️ Escalated to a human" if update.get("escalated") else None
        if node == "publisher" and update.get("publication"):
            return f"✓ Published: {esc(update['publication'].get('location'))}"
        if update.get("outcome") == "failed":
            return f"✗ Failed: {esc(public_reason(update.get('error')))}"
    except (KeyError, TypeError, IndexError, ValueError):
        return f"✓ {esc(node)}"
    return None
