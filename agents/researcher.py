"""The Researcher desk: plan sub-questions, retrieve per sub-question, fetch the pages the request
names, and number the notes with the excerpt each source gives — or say plainly that the corpus
does not cover the topic.

Decisions only (what to ask, what to keep, how to number); the I/O (retrieval, fetching, storing)
is handed in by graphs/desks.py. Retrieved and fetched text reaches the LLMs as quoted data inside
<source> tags, never as instructions.
"""
from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import re

from agents.models import (
    Candidate,
    Citation,
    FetchedSource,
    PlannedSubQuestions,
    ResearchNotes,
    ResearchPlan,
    RetrievalResult,
)
from agents.prompts import load_prompt

log = logging.getLogger(__name__)
NOTES_PROMPT = "researcher.notes@2"  # the topic (typed by a user) as a delimited data block
PLAN_PROMPT = "researcher.plan@1"
MAX_EXCERPT_CHARS = 700  # keeps the prompts short: a small CPU model evaluates ~30-80 prompt tokens/s
MAX_URL_CHARS = 2000
WEB_PREFIX = "web/"  # source paths of pages fetched for a post (never retrieved for another post)
# Linear: one character class, bounded length; trailing punctuation is trimmed after the match.
_URL = re.compile(r"https?://[^\s<>\"'`]{1,2000}", re.IGNORECASE)
_TRAILING = ".,;:!?)]}"


def split_request(text: str, extra_urls: list[str] | None = None, *, max_urls: int = 5) -> tuple[str, list[str]]:
    """(topic without its URLs, the URLs: those in the text, then `extra_urls`; deduplicated, at most max_urls)."""
    urls: list[str] = []
    for m in _URL.finditer(text):
        urls.append(m.group(0).rstrip(_TRAILING))
    topic = _URL.sub(" ", text)
    topic = " ".join(topic.split()).strip(" -:,;") or text.strip()
    urls += [u.strip() for u in (extra_urls or []) if u and u.strip()]
    seen = list(dict.fromkeys(u[:MAX_URL_CHARS] for u in urls))
    return topic, seen[:max_urls]


@functools.cache
def _plan_schema_text() -> str:
    return json.dumps(PlannedSubQuestions.model_json_schema(), separators=(",", ":"))


def plan_messages(topic: str, n: int) -> list[dict]:
    return load_prompt(PLAN_PROMPT).messages(topic=topic, n=str(n), schema=_plan_schema_text())


async def plan_research(gateway, *, topic: str, urls: list[str], n: int, thread_id: str | None,
                        max_tokens: int) -> ResearchPlan:
    """n sub-questions (one structured call, validated); an invalid plan is recorded and retrieval
    runs on the topic alone — planning improves research, it never stops it."""
    from tools.llm import LLMOutputInvalid

    try:
        planned, result = await gateway.complete_json("researcher", plan_messages(topic, n), PlannedSubQuestions,
                                                      thread_id=thread_id, max_tokens=max_tokens)
    except LLMOutputInvalid as err:
        log.warning("research plan did not validate: retrieving on the topic alone (%s)", str(err)[:200])
        return ResearchPlan(topic=topic, urls=urls, error=f"invalid plan: {str(err)[:500]}")
    subs = [q for q in planned.sub_questions if q.question.strip().lower() != topic.strip().lower()][:n]
    return ResearchPlan(topic=topic, urls=urls, sub_questions=subs, model=result.model)


def search_queries(plan: ResearchPlan) -> list[tuple[str, str | None]]:
    """(query, hypothesis) per search: the topic first (its HyDE text comes from the "hyde" role),
    then each sub-question with the plan's own hypothesis sentence (no further LLM call)."""
    out: list[tuple[str, str | None]] = [(plan.topic, None)]
    for q in plan.sub_questions:
        out.append((q.question, q.hypothesis or ""))
    return out


def web_source_path(thread_id: str, url: str) -> str:
    """Where a page fetched for a post is stored: one document per (post, URL)."""
    return f"{WEB_PREFIX}{thread_id}/{hashlib.sha256(url.encode()).hexdigest()[:16]}"


def select_sources(retrieval: RetrievalResult | None, fetched: list[FetchedSource], *, top_k: int) -> list[Candidate]:
    """The notes' sources: every page fetched for the post first (the requester named them), then the
    retrieved notes above the floor, best first, one chunk per note, top_k retrieved at most."""
    chosen: list[Candidate] = [f.chunk for f in fetched if f.ok and f.chunk is not None]
    seen = {c.document_id for c in chosen}
    for c in (retrieval.candidates if retrieval else [])[:top_k]:
        if c.document_id not in seen:
            chosen.append(c)
            seen.add(c.document_id)
    return chosen


def _quote(title: str, excerpt: str) -> str:
    return f'<source title="{html.escape(title, quote=True)}">\n{html.escape(excerpt, quote=False)}\n</source>'


def notes_from_sources(sources: list[Candidate], *, urls: dict[str, str] | None = None) -> ResearchNotes:
    """Numbered, quoted excerpts; each Citation keeps the excerpt it contributes (what a claim citing
    it is checked against). `urls` maps a document id to the page URL it was fetched from."""
    urls = urls or {}
    citations, blocks = [], []
    for n, ch in enumerate(sources, start=1):
        excerpt = ch.content.strip()[:MAX_EXCERPT_CHARS]
        url = urls.get(ch.document_id, "")
        citations.append(Citation(n=n, chunk_id=ch.chunk_id, source_title=ch.title, source_path=ch.source_path,
                                  heading=ch.heading, url=url, excerpt=excerpt, score=round(ch.cosine, 4)))
        title = ch.title + (f" ({url})" if url else "")
        blocks.append(f"[{n}] {_quote(title, excerpt)}")
    return ResearchNotes(notes="\n\n".join(blocks), citations=citations, grounded=True)


def notes_from_chunks(chunks) -> ResearchNotes:
    """Notes from retrieval chunks (tools.retrieval.RetrievedChunk), numbered in the given order."""
    return notes_from_sources([Candidate(chunk_id=str(c.chunk_id), document_id=str(c.document_id),
                                         source_path=c.source_path, title=c.title, heading=c.heading_path,
                                         content=c.content, score=float(c.score),
                                         cosine=float(getattr(c, "cosine", None) or c.score)) for c in chunks])


def ungrounded_reason(plan: ResearchPlan, retrieval: RetrievalResult | None, fetched: list[FetchedSource]) -> str:
    if retrieval is not None and retrieval.skipped:
        why = retrieval.skipped
    elif retrieval is not None and retrieval.below_floor:
        best = f"{retrieval.best_cosine:.2f}" if retrieval.best_cosine is not None else "?"
        why = (f"the corpus does not cover this topic: the nearest notes ({', '.join(retrieval.below_floor[:3])}) "
               f"are below the relevance floor ({best} < {retrieval.floor:.2f})")
    else:
        why = "the corpus returned nothing for this topic"
    failed = [f for f in fetched if not f.ok]
    if failed:
        why += f"; {len(failed)} of {len(fetched)} named pages could not be fetched"
    return why


async def ungrounded_notes(gateway, *, topic: str, reason: str, thread_id: str | None, max_tokens: int,
                           fetch_errors: list[str]) -> ResearchNotes:
    """The LLM's own notes, marked UNGROUNDED with the reason (the human sees it at the gate)."""
    result = await gateway.complete_text(
        "researcher", load_prompt(NOTES_PROMPT).messages(topic=topic), thread_id=thread_id, max_tokens=max_tokens
    )
    text = result.text.strip() or f"(no notes: the model returned nothing about {topic})"
    return ResearchNotes(notes=f"UNGROUNDED ({reason}; verify every claim):\n{text}", grounded=False,
                         queries=[topic], ungrounded_reason=reason, fetch_errors=fetch_errors)
