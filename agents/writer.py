"""The Writer desk: an outline, then a draft from the research notes; revisions from the citation
check's, the Editor's or a human's feedback, keeping the sentences whose citations passed."""
from __future__ import annotations

import functools
import json
import logging
import re

from agents.models import Draft, DraftOutline, Outline, ResearchNotes
from agents.prompts import load_prompt

log = logging.getLogger(__name__)
# @2 (security) fenced the data; @3 adds the outline and the citation rules; @4 adds a worked [n] example
DRAFT_PROMPT = "writer.draft@4"
REVISE_PROMPT = "writer.revise@3"
OUTLINE_PROMPT = "writer.outline@1"
_TITLE_OPEN = re.compile(r"[ \t]*#{1,3}[ \t]+")  # a line's opening only: linear on any draft
_MARKER = re.compile(r"\s?\[(\d{1,3}(?:\s{0,2}[,;]\s{0,2}\d{1,3}){0,9})\]")


def split_title(text: str, fallback: str) -> tuple[str, str]:
    """Take the first Markdown heading (#, ## or ###) starting in the first 200 characters as the
    title; the rest is the body. Line by line with str methods (the one-regex form rescanned every
    blank line from each one: quadratic on a draft of newlines)."""
    text = text.strip()
    pos = 0
    for line in text.splitlines(keepends=True):
        if pos >= 200:
            break
        m = _TITLE_OPEN.match(line)
        content = line[m.end():].strip() if m else ""
        if content:
            title = content.strip("*").strip()[:200]
            body = (text[:pos] + text[pos + len(line.rstrip("\r\n")):]).strip()
            return title or fallback[:200], body
        pos += len(line)
    return fallback.strip()[:200] or fallback[:200], text


def keep_known_citations(body: str, notes: ResearchNotes) -> tuple[str, list[int]]:
    """[n] markers only for sources in the notes: a marker naming no source is removed (the
    sentence is then uncited, and the citation check treats it so). Returns (body, dropped numbers)."""
    known = {c.n for c in notes.citations}
    dropped: list[int] = []

    def fix(m: re.Match) -> str:
        nums = [int(x) for x in re.split(r"[,;]", m.group(1)) if x.strip().isdigit()]
        good = [n for n in nums if n in known]
        dropped.extend(n for n in nums if n not in known)
        if not good:
            return ""
        return (" " if m.group(0).startswith(" ") else "") + "[" + ", ".join(map(str, good)) + "]"

    fixed = _MARKER.sub(fix, body)
    return fixed, sorted(set(dropped))


@functools.cache
def _outline_schema_text() -> str:
    return json.dumps(Outline.model_json_schema(), separators=(",", ":"))


def outline_messages(topic: str, notes: ResearchNotes, questions: list[str] | None = None) -> list[dict]:
    asked = "\n".join(f"- {q}" for q in (questions or [])) or "(none)"
    return load_prompt(OUTLINE_PROMPT).messages(topic=topic, notes=notes.notes, questions=asked,
                                                schema=_outline_schema_text())


async def write_outline(gateway, *, topic: str, notes: ResearchNotes, version: int, thread_id: str | None,
                        max_tokens: int, questions: list[str] | None = None) -> DraftOutline:
    """A title and 2-6 section lines (one structured call). An invalid outline is recorded and the
    draft is written from the notes alone: the outline helps the draft, it never blocks it."""
    from tools.llm import LLMOutputInvalid

    try:
        outline, result = await gateway.complete_json("writer", outline_messages(topic, notes, questions), Outline,
                                                      thread_id=thread_id, max_tokens=max_tokens)
    except LLMOutputInvalid as err:
        log.warning("outline did not validate: drafting from the notes alone (%s)", str(err)[:200])
        return DraftOutline(version=version, error=f"invalid outline: {str(err)[:500]}")
    return DraftOutline(version=version, title=outline.title.strip(), model=result.model,
                        sections=[s.strip() for s in outline.sections if s.strip()])


def outline_text(outline: DraftOutline | None) -> str:
    if outline is None or not outline.sections:
        return "(none: structure the post yourself)"
    head = f"Title: {outline.title}\n" if outline.title else ""
    return head + "\n".join(f"{i}. {s}" for i, s in enumerate(outline.sections, 1))


def draft_messages(topic: str, notes: ResearchNotes, outline: DraftOutline | None = None) -> list[dict]:
    return load_prompt(DRAFT_PROMPT).messages(topic=topic, notes=notes.notes, outline=outline_text(outline))


def revision_messages(topic: str, notes: ResearchNotes, previous: Draft, feedback: str) -> list[dict]:
    draft = f"# {previous.title}\n\n{previous.body}"
    return load_prompt(REVISE_PROMPT).messages(topic=topic, notes=notes.notes, draft=draft, feedback=feedback)


async def write_draft(
    gateway, *, topic: str, notes: ResearchNotes, previous: Draft | None, feedback: str | None,
    reason: str, thread_id: str | None, max_tokens: int, outline: DraftOutline | None = None,
    passed_sentences: list[str] | None = None, sent_messages: list[dict] | None = None,
) -> Draft:
    """Write version n+1: a first draft (from the outline when there is one), or a revision when there
    is a previous draft and feedback. `passed_sentences` (the last citation check's supported
    sentences) are counted in the new draft as kept_claims. `sent_messages`, when given, receives the
    messages sent (each render has its own data delimiter: the training export keeps these very ones)."""
    if previous is not None and feedback:
        messages, prompt = revision_messages(topic, notes, previous, feedback), REVISE_PROMPT
    else:
        messages, prompt, reason = draft_messages(topic, notes, outline), DRAFT_PROMPT, "first" if previous is None else reason
    if sent_messages is not None:
        sent_messages[:] = messages
    result = await gateway.complete_text("writer", messages, thread_id=thread_id, max_tokens=max_tokens)
    if not result.text.strip():
        raise ValueError("the writer model returned an empty draft")
    title, body = split_title(result.text, fallback=(outline.title if outline and outline.title else topic))
    body = body or result.text.strip()
    body, dropped = keep_known_citations(body, notes)
    kept = sum(1 for s in (passed_sentences or []) if s and s in body)
    if dropped:
        log.info("draft cited sources that are not in the notes: removed %s", dropped)
    return Draft(
        version=(previous.version + 1) if previous else 1, title=title, body=body,
        prompt=prompt, model=result.model, reason=reason, dropped_citations=dropped, kept_claims=kept,
    )
