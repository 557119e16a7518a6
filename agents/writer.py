"""The Writer desk: a draft from the research notes, revisions from the Editor's or a human's feedback."""
from __future__ import annotations

import re

from agents.models import Draft, ResearchNotes
from agents.prompts import load_prompt

DRAFT_PROMPT = "writer.draft@2"  # @1 stays loadable; @2 fences the topic, notes, draft, feedback as data
REVISE_PROMPT = "writer.revise@2"
_TITLE = re.compile(r"^\s*#{1,3}\s+(?P<title>.+?)\s*$", re.MULTILINE)


def split_title(text: str, fallback: str) -> tuple[str, str]:
    """Take the first Markdown heading as the title; the rest is the body."""
    text = text.strip()
    m = _TITLE.search(text)
    if m and m.start() < 200:
        title = m.group("title").strip().strip("*").strip()[:200]
        body = (text[: m.start()] + text[m.end():]).strip()
    else:
        title, body = fallback.strip()[:200], text
    return title or fallback[:200], body


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
