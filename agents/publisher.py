"""The Publisher desk: render the approved draft with its sources; the publish key."""
from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import datetime, timezone

from agents.models import Draft, ResearchNotes
from tools.publish import Rendered


def publish_key(thread_id: str, draft: Draft) -> str:
    """One key per (thread, exact draft): the same approval replayed maps to the same key."""
    return hashlib.sha256(f"{thread_id}:{draft.content_hash}".encode()).hexdigest()[:40]


def slugify(title: str, key: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "post"
    return f"{slug}-{key[:8]}"


def _sources(notes: ResearchNotes | None) -> list[str]:
    if not notes or not notes.citations:
        return []
    return [f"[{c.n}] {c.source_title}" + (f" — {c.heading}" if c.heading else "") for c in notes.citations]


def render_post(thread_id: str, draft: Draft, notes: ResearchNotes | None, *, requester: str,
                scores: dict | None = None, now: datetime | None = None) -> Rendered:
    key = publish_key(thread_id, draft)
    now = now or datetime.now(timezone.utc)
    sources = _sources(notes)
    front = [
        "---",
        f"title: {json.dumps(draft.title)}",
        f"date: {now.isoformat(timespec='seconds')}",
        f"thread_id: {json.dumps(thread_id)}",
        f"publish_key: {key}",
        f"draft_version: {draft.version}",
        f"model: {json.dumps(draft.model)}",
        f"requester: {json.dumps(requester)}",
        f"grounded: {str(bool(notes and notes.grounded)).lower()}",
    ]
    if scores:
        front.append(f"scores: {json.dumps(scores)}")
    front.append("---")
    md = "\n".join(front) + f"\n\n# {draft.title}\n\n{draft.body.strip()}\n"
    if sources:
        md += "\n## Sources\n\n" + "\n".join(f"- {s}" for s in sources) + "\n"
    paragraphs = "".join(f"<p>{html.escape(p.strip())}</p>\n" for p in draft.body.split("\n\n") if p.strip())
    src_html = ("<h2>Sources</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sources) + "</ul>") if sources else ""
    page = (f"<!doctype html><meta charset=utf-8><title>{html.escape(draft.title)}</title>\n"
            f"<article><h1>{html.escape(draft.title)}</h1>\n{paragraphs}{src_html}</article>\n")
    return Rendered(publish_key=key, slug=slugify(draft.title, key), title=draft.title, markdown=md, html=page)
