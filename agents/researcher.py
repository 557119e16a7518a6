"""The Researcher desk: ground the post in the ingested corpus, or say plainly that it is not.

Retrieved text is handed to the LLMs as quoted data inside <source> tags, never as instructions.
"""
from __future__ import annotations

import html
import logging

from agents.models import Citation, ResearchNotes
from agents.prompts import load_prompt

log = logging.getLogger(__name__)
NOTES_PROMPT = "researcher.notes@2"  # the topic (typed by a user) as a delimited data block
MAX_EXCERPT_CHARS = 700  # keeps the prompts short: a small CPU model evaluates ~30-80 prompt tokens/s


def notes_from_chunks(chunks) -> ResearchNotes:
    """Numbered, quoted excerpts with citations that point at the chunks' ids."""
    citations, blocks = [], []
    for n, ch in enumerate(chunks, start=1):
        citations.append(Citation(n=n, chunk_id=str(ch.chunk_id), source_title=ch.title,
                                  source_path=ch.source_path, heading=ch.heading_path))
        excerpt = ch.content.strip()[:MAX_EXCERPT_CHARS]
        blocks.append(f'[{n}] <source title="{html.escape(ch.title, quote=True)}">\n{html.escape(excerpt, quote=False)}\n</source>')
    return ResearchNotes(notes="\n\n".join(blocks), citations=citations, grounded=True)


async def gather_research(gateway, *, topic: str, thread_id: str | None, top_k: int, max_tokens: int) -> ResearchNotes:
    """Retrieval over the corpus when there is one; otherwise the LLM's own notes marked ungrounded."""
    try:
        from tools import retrieval  # the RAG seam (tools/retrieval.py)
    except ImportError as err:  # the embedding stack is optional for a bare install
        log.warning("retrieval unavailable (%s): writing ungrounded notes", err)
        retrieval = None
    if retrieval is not None and await retrieval.corpus_size() > 0:
        chunks = await retrieval.retrieve(topic, k=top_k, thread_id=thread_id)
        if chunks:
            notes = notes_from_chunks(chunks)
            notes.queries = [topic]
            return notes
        log.info("corpus has no match for %r: falling back to ungrounded notes", topic)
    result = await gateway.complete_text(
        "researcher", load_prompt(NOTES_PROMPT).messages(topic=topic), thread_id=thread_id, max_tokens=max_tokens
    )
    text = result.text.strip() or f"(no notes: the model returned nothing about {topic})"
    return ResearchNotes(notes=f"UNGROUNDED (no corpus sources; verify every claim):\n{text}", grounded=False,
                         queries=[topic])
