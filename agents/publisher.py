"""The Publisher desk: render the approved draft with its sources; the publish key."""
from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import UTC, datetime

import nh3

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


# What survives in a published page: text, its emphasis, headings, lists, code, quotes, and
# links to http(s) only. Everything else a draft holds (<script>, onerror=, <iframe>, javascript:
# and data: URLs, style) is dropped: a draft is LLM output shaped by corpus and web text.
ALLOWED_TAGS = {"a", "b", "blockquote", "br", "code", "em", "h1", "h2", "h3", "h4", "i", "li", "ol", "p", "pre",
                "strong", "ul", "article"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "li": {"value"}}
SAFE_SCHEMES = ("http://", "https://")
# Bounded, so linear on any draft: [text](target "title") inline links and images, and
# `[label]: target` reference definitions.
_MD_LINK = re.compile(r"(!?)\[([^\]\n]{0,1000})\]\(((?:[^()\s]|\([^()\s]{0,200}\)){0,2000})"
                      r"((?:\s+\"[^\"\n]{0,300}\")?)\)")
_MD_REFERENCE = re.compile(r"^( {0,3}\[[^\]\n]{1,1000}\]:[ \t]{0,16})(\S{1,2000})(.{0,400})$", re.MULTILINE)
_MD_AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.\-]{0,31}:[^<>\s]{0,2000})>")


def _safe_url(url: str) -> bool:
    return url.strip().lower().startswith(SAFE_SCHEMES)


def sanitize_markdown(text: str) -> str:
    """Markdown as published: raw HTML stripped (nh3, no tags kept), links and images whose target
    is not http(s) reduced to their text (javascript:, data:, vbscript:, file:, relative ones)."""
    def link(m: re.Match) -> str:
        bang, label, target, _title = m.groups()
        if _safe_url(target):
            return m.group(0)
        return label if not bang else f"[image: {label}]" if label else ""

    def reference(m: re.Match) -> str:
        return m.group(0) if _safe_url(m.group(2)) else ""

    def autolink(m: re.Match) -> str:  # <https://x> as [x](x): the HTML sanitiser would take it for a tag
        url = m.group(1)
        return f"[{url}]({url})" if _safe_url(url) else ""

    text = _MD_AUTOLINK.sub(autolink, text)
    text = _MD_LINK.sub(link, text)
    text = _MD_REFERENCE.sub(reference, text)
    # nh3 parses as HTML: tags go, their text stays; the entities it writes (&lt; &amp;) render as
    # the same characters in Markdown.
    return nh3.clean(text, tags=set(), attributes={}, strip_comments=True)


def sanitize_html(fragment: str) -> str:
    return nh3.clean(fragment, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes={"http", "https"},
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


def front_matter(fields: dict, extra: tuple[str, ...] | list[str] = ()) -> str:
    """title, date and sources always; the other fields only when NEWSROOM_PUBLISH_FRONT_MATTER
    names them (the thread id, publish key, model, scores and requester are internal)."""
    lines = ["---"]
    for name in ("title", "date", "sources", *[e for e in extra if e not in ("title", "date", "sources")]):
        if name in fields and fields[name] is not None:
            lines.append(f"{name}: {json.dumps(fields[name], ensure_ascii=False)}")
    lines.append("---")
    return "\n".join(lines)


def render_post(thread_id: str, draft: Draft, notes: ResearchNotes | None, *, requester: str,
                scores: dict | None = None, now: datetime | None = None,
                front_matter_extra: tuple[str, ...] | list[str] = ()) -> Rendered:
    key = publish_key(thread_id, draft)
    now = now or datetime.now(UTC)
    sources = [nh3.clean(x, tags=set(), attributes={}) for x in _sources(notes)]
    title = nh3.clean(draft.title, tags=set(), attributes={}).strip() or "post"
    body = sanitize_markdown(draft.body.strip())
    fields = {"title": title, "date": now.isoformat(timespec="seconds"), "sources": sources,
              "thread_id": thread_id, "publish_key": key, "draft_version": draft.version, "model": draft.model,
              "requester": requester, "grounded": bool(notes and notes.grounded), "scores": scores}
    md = front_matter(fields, front_matter_extra) + f"\n\n# {title}\n\n{body}\n"
    if sources:
        md += "\n## Sources\n\n" + "\n".join(f"- {s}" for s in sources) + "\n"
    # The page shows the published (sanitised) text, escaped: nothing of the draft is markup here.
    paragraphs = "".join(f"<p>{html.escape(html.unescape(p.strip()))}</p>\n" for p in body.split("\n\n") if p.strip())
    src_html = ("<h2>Sources</h2><ul>" + "".join(f"<li>{html.escape(html.unescape(s))}</li>" for s in sources)
                + "</ul>") if sources else ""
    article = sanitize_html(f"<article><h1>{html.escape(title)}</h1>\n{paragraphs}{src_html}</article>")
    page = (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>\n"
            "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
            f"{article}\n")
    return Rendered(publish_key=key, slug=slugify(title, key), title=title, markdown=md, html=page)
