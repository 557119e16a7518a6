"""The Writer desk: a draft from the research notes, revisions from the Editor's or a human's feedback."""
from __future__ import annotations

import re

from agents.models import Draft, ResearchNotes
from agents.prompts import load_prompt

DRAFT_PROMPT = "writer.draft@2"  # @1 stays loadable; @2 fences the topic, notes, draft, feedback as data
REVISE_PROMPT = "writer.revise@2"
_TITLE_OPEN = re.compile(r"[ \t]*#{1,3}[ \t]+")  # a line's opening only: linear on any draft


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


def draft_messages(topic: str, notes: ResearchNotes) -> list[dict]:
    return load_prompt(DRAFT_PROMPT).messages(topic=topic, notes=notes.notes)


def revision_messages(topic: str, notes: ResearchNotes, previous: Draft, feedback: str) -> list[dict]:
    draft = f"# {previous.title}\n\n{previous.body}"
    return load_prompt(REVISE_PROMPT).messages(topic=topic, notes=notes.notes, draft=draft, feedback=feedback)


async def write_draft(
    gateway, *, topic: str, notes: ResearchNotes, previous: Draft | None, feedback: str | None,
    reason: str, thread_id: str | None, max_tokens: int,
) -> Draft:
    """Write version n+1: a first draft, or a revision when there is a previous draft and feedback."""
    if previous is not None and feedback:
        messages, prompt = revision_messages(topic, notes, previous, feedback), REVISE_PROMPT
    else:
        messages, prompt, reason = draft_messages(topic, notes), DRAFT_PROMPT, "first" if previous is None else reason
    result = await gateway.complete_text("writer", messages, thread_id=thread_id, max_tokens=max_tokens)
    if not result.text.strip():
        raise ValueError("the writer model returned an empty draft")
    title, body = split_title(result.text, fallback=topic)
    return Draft(
        version=(previous.version + 1) if previous else 1, title=title, body=body or result.text.strip(),
        prompt=prompt, model=result.model, reason=reason,
    )
