"""The Writer desk: an outline, then a draft from the research notes; revisions from the citation
check's, the Editor's or a human's feedback, keeping the sentences whose citations passed."""
from __future__ import annotations

import difflib
import functools
import json
import logging
import re
from dataclasses import dataclass

from agents.editor import citation_feedback, feedback_for_writer
from agents.models import Draft, DraftOutline, DraftSection, DraftSentence, Outline, ResearchNotes, StructuredDraft
from agents.prompts import load_prompt

log = logging.getLogger(__name__)
# @2 (security) fenced the data; @3 adds the outline and the citation rules; @4 adds a worked [n] example
DRAFT_PROMPT = "writer.draft@4"
# The first draft as structured output: each sentence names its note and code renders that number as
# its [n] (NEWSROOM_DRAFT_FORMAT=cited_json; the local Qwen default: in free text it left them out).
# @6: each sentence's text before its note (DraftSentence's field order) and a two-note section.
CITED_DRAFT_PROMPT = "writer.draft@6"
CITED_REVISE_PROMPT = "writer.revise@5"  # a revision of a cited_json draft, in the same form
# NEWSROOM_DRAFT_FORMAT=cited_sections: one structured call per outline section, each given only the
# notes that section's outline line names, so a sentence can only be copied from a note it may cite.
CITED_SECTION_PROMPT = "writer.draft_section@1"
SECTION_MIN_TOKENS = 200  # a section's cap: the draft's max tokens shared by the sections, at least this
_OUTLINE_CITES = re.compile(r"\[(\d{1,3}(?:\s{0,2}[,;]\s{0,2}\d{1,3}){0,9})\]")  # an outline line's [n]
CITED_DRAFT_WORDS = 220  # asked of the model: fits the writer's max tokens with the JSON around it
REVISE_PROMPT = "writer.revise@3"
REVISE_SECTION_PROMPT = "writer.revise_section@1"  # a human's revise naming one section: only it is rewritten
OUTLINE_PROMPT = "writer.outline@1"
HUMAN_EDIT_PROMPT = "human-edit"  # Draft.prompt of a version a human wrote (no template behind it)
HUMAN_EDIT_MODEL = "human"
_TITLE_OPEN = re.compile(r"[ \t]*#{1,3}[ \t]+")  # a line's opening only: linear on any draft
_MARKER = re.compile(r"\s?\[(\d{1,3}(?:\s{0,2}[,;]\s{0,2}\d{1,3}){0,9})\]")
_HEADING_OPEN = re.compile(r"[ \t]{0,3}(#{1,6})[ \t]+")  # matched at a line's start only: linear
_FENCE = ("```", "~~~")
# A sentence ends at . ! ? before a capital, a digit or an opening quote/parenthesis (linear).
_PIECE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_TERMINAL = ".!?"
# Salvage of a reply cut at max_tokens: the title, the headings and each complete sentence object
# (note and text inside one {...}, either order). Every alternative starts with a fixed literal and
# holds one bounded string: linear on any reply.
_STRING = r'"((?:[^"\\]|\\.){0,2000})"'
_S = r"\s{0,20}"
_SALVAGE = re.compile(
    rf'"(title|heading)"{_S}:{_S}{_STRING}'
    rf'|\{{{_S}"note"{_S}:{_S}(\d{{1,3}}){_S},{_S}"text"{_S}:{_S}{_STRING}{_S}\}}'
    rf'|\{{{_S}"text"{_S}:{_S}{_STRING}{_S},{_S}"note"{_S}:{_S}(\d{{1,3}}){_S}\}}')


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


def outline_from_plan(topic: str, questions: list[str], *, version: int) -> DraftOutline | None:
    """The research plan's sub-questions as the outline's sections (NEWSROOM_OUTLINE_SOURCE=plan):
    the plan already split the topic into what a post must answer, and the outline call's sections
    were those questions reworded, for 35-40 s of the local model. None when the plan has fewer
    than two questions (the outline call is made instead)."""
    sections = list(dict.fromkeys(q.strip() for q in questions if q and q.strip()))[:6]
    if len(sections) < 2:
        return None
    return DraftOutline(version=version, title=" ".join(topic.split())[:160], sections=sections, source="plan")


def outline_text(outline: DraftOutline | None) -> str:
    if outline is None or not outline.sections:
        return "(none: structure the post yourself)"
    head = f"Title: {outline.title}\n" if outline.title else ""
    return head + "\n".join(f"{i}. {s}" for i, s in enumerate(outline.sections, 1))


def draft_messages(topic: str, notes: ResearchNotes, outline: DraftOutline | None = None) -> list[dict]:
    return load_prompt(DRAFT_PROMPT).messages(topic=topic, notes=notes.notes, outline=outline_text(outline))


def cited_draft_messages(topic: str, notes: ResearchNotes, outline: DraftOutline | None = None,
                         *, words: int = CITED_DRAFT_WORDS) -> list[dict]:
    sections = f"{len(outline.sections)}" if outline is not None and outline.sections else "2 to 4"
    # No schema text in the prompt (the outline's and the plan's carry one): the response format
    # enforces it (a grammar on llama.cpp) and the example shows it; ~300 prompt tokens less.
    return load_prompt(CITED_DRAFT_PROMPT).messages(topic=topic, notes=notes.notes, outline=outline_text(outline),
                                                    words=str(words), sections=sections)


def section_note_numbers(line: str, notes: ResearchNotes) -> list[int]:
    """The notes an outline line names ("KV heads [1, 3]" -> [1, 3]), those in the notes only; all the
    notes when it names none."""
    known = [c.n for c in notes.citations]
    named = {int(x) for m in _OUTLINE_CITES.finditer(line) for x in re.split(r"[,;]", m.group(1)) if x.strip()}
    return [n for n in known if n in named] or known


def notes_subset(notes: ResearchNotes, numbers: list[int]) -> str:
    """The blocks of `notes.notes` for `numbers`, with their own numbers ("[3] <source ...>"): each block
    runs from its "[n] <source" line to the next note's (an excerpt is HTML-escaped: it holds no "<").
    All the notes when a block is not where expected."""
    known = [c.n for c in notes.citations]
    text = notes.notes
    starts: dict[int, int] = {}
    for n in known:
        at = text.find(f"[{n}] <source", max(starts.values(), default=0))
        if at < 0 or (at > 0 and text[at - 1] != "\n"):
            return text
        starts[n] = at
    ends = {n: (starts[known[i + 1]] if i + 1 < len(known) else len(text)) for i, n in enumerate(known)}
    return "\n\n".join(text[starts[n]:ends[n]].strip() for n in numbers if n in starts)


def section_draft_messages(topic: str, notes: ResearchNotes, outline: DraftOutline, index: int) -> list[dict]:
    line = outline.sections[index]
    numbers = section_note_numbers(line, notes)
    section = f"{line} [{', '.join(map(str, numbers))}]" if not _OUTLINE_CITES.search(line) else line
    return load_prompt(CITED_SECTION_PROMPT).messages(topic=topic, outline=outline_text(outline), section=section,
                                                      notes=notes_subset(notes, numbers))


def _with_marker(piece: str, marker: str) -> str:
    """`piece` with `marker` before its closing full stop (the house style: "... 16 tokens [1].")."""
    piece = piece.rstrip()
    if piece and piece[-1] in _TERMINAL:
        return f"{piece[:-1].rstrip()} {marker}{piece[-1]}"
    return f"{piece} {marker}"


def render_sentence(sentence: DraftSentence, known: set[int]) -> tuple[str, int | None]:
    """One structured sentence as Markdown, and the note it named that is not in the notes (or None).
    The marker is exactly the note the model named, on each sentence of its text (a text of two
    sentences names one note for both); markers the model typed into the text are removed, so the
    note field is the only citation; a note not in the notes gives no marker (the sentence is uncited)."""
    text = " ".join(_MARKER.sub("", sentence.text).split())
    if not text:
        return "", None
    if sentence.note == 0:
        return text, None
    if sentence.note not in known:
        return text, sentence.note
    marker = f"[{sentence.note}]"
    return " ".join(_with_marker(p, marker) for p in _PIECE_END.split(text) if p.strip()), None


def render_structured(draft: StructuredDraft, notes: ResearchNotes) -> tuple[str, str, list[int]]:
    """(title, Markdown body, notes named that are not in the notes) of a structured draft: a "## "
    heading per section, its sentences as one paragraph."""
    known = {c.n for c in notes.citations}
    dropped: list[int] = []
    blocks: list[str] = []
    for section in draft.sections:
        sentences = []
        for sentence in section.sentences:
            text, unknown = render_sentence(sentence, known)
            if unknown is not None:
                dropped.append(unknown)
            if text:
                sentences.append(text)
        if not sentences:
            continue
        heading = " ".join(section.heading.strip().lstrip("#").split())
        blocks.append((f"## {heading}\n\n" if heading else "") + " ".join(sentences))
    return " ".join(draft.title.strip().lstrip("#").split()), "\n\n".join(blocks), sorted(set(dropped))


def salvage_structured(raw: str) -> StructuredDraft | None:
    """The complete sentences of a structured reply that stopped early (max tokens): its title, headings
    and every sentence whose note and text were both written, in order; None when not one sentence
    was. A sentence cut inside its text is left out, never completed; no note is guessed."""
    title, sections = _salvaged_parts(raw)
    try:
        return StructuredDraft(title=title, sections=[
            DraftSection(heading=h, sentences=[DraftSentence(note=n, text=t) for n, t in ss][:12])
            for h, ss in sections if ss][:6])
    except ValueError:
        return None


def salvage_section(raw: str) -> DraftSection | None:
    """salvage_structured for one section's reply (writer.draft_section@1): its heading and complete sentences."""
    _, sections = _salvaged_parts(raw)
    if not sections or not sections[0][1]:
        return None
    try:
        return DraftSection(heading=sections[0][0] or "-",
                            sentences=[DraftSentence(note=n, text=t) for n, t in sections[0][1]][:12])
    except ValueError:
        return None


def _salvaged_parts(raw: str) -> tuple[str, list]:
    title, sections = "", []
    for m in _SALVAGE.finditer(raw or ""):
        key, text = m.group(1), m.group(2) or m.group(4) or m.group(5) or ""
        try:
            value = json.loads(f'"{text}"', strict=False)
        except ValueError:
            continue
        if key == "title" and not title:
            title = value
        elif key == "heading":
            sections.append([value, []])
        elif key is None and sections:
            sections[-1][1].append((int(m.group(3) or m.group(6)), value))
    return title, sections


def revision_messages(topic: str, notes: ResearchNotes, previous: Draft, feedback: str, *,
                      prompt: str = REVISE_PROMPT) -> list[dict]:
    draft = f"# {previous.title}\n\n{previous.body}"
    return load_prompt(prompt).messages(topic=topic, notes=notes.notes, draft=draft, feedback=feedback)


async def write_draft(
    gateway, *, topic: str, notes: ResearchNotes, previous: Draft | None, feedback: str | None,
    reason: str, thread_id: str | None, max_tokens: int, outline: DraftOutline | None = None,
    passed_sentences: list[str] | None = None, sent_messages: list[dict] | None = None,
    draft_format: str = "text",
) -> Draft:
    """Write version n+1: a first draft (from the outline when there is one), or a revision when there
    is a previous draft and feedback. `passed_sentences` (the last citation check's supported
    sentences) are counted in the new draft as kept_claims. `sent_messages`, when given, receives the
    messages sent (each render has its own data delimiter: the training export keeps these very ones).
    `draft_format` "cited_json": the draft (first or revision) is structured, each sentence naming its
    note (write_cited_draft); free text only when the structured reply held no sentence."""
    revising = previous is not None and bool(feedback)
    reason = reason if revising else ("first" if previous is None else reason)
    if draft_format == "cited_sections" and not revising and outline is not None and len(outline.sections) >= 2:
        cited = await write_sectioned_draft(gateway, topic=topic, notes=notes, outline=outline, thread_id=thread_id,
                                            max_tokens=max_tokens, sent_messages=sent_messages)
        if cited is not None:
            return cited
    if draft_format in ("cited_json", "cited_sections"):
        structured = (revision_messages(topic, notes, previous, feedback, prompt=CITED_REVISE_PROMPT) if revising
                      else cited_draft_messages(topic, notes, outline))
        cited = await write_cited_draft(gateway, messages=structured, notes=notes, thread_id=thread_id,
                                        max_tokens=max_tokens, sent_messages=sent_messages,
                                        prompt=CITED_REVISE_PROMPT if revising else CITED_DRAFT_PROMPT,
                                        fallback_title=previous.title if revising else
                                        (outline.title if outline and outline.title else topic))
        if cited is not None:
            kept = sum(1 for s in (passed_sentences or []) if s and s in cited.body)
            return cited.model_copy(update={"version": (previous.version + 1) if previous else 1,
                                            "reason": reason, "kept_claims": kept})
    if revising:
        messages, prompt = revision_messages(topic, notes, previous, feedback), REVISE_PROMPT
    else:
        messages, prompt = draft_messages(topic, notes, outline), DRAFT_PROMPT
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


async def write_cited_draft(gateway, *, messages: list[dict], notes: ResearchNotes, thread_id: str | None,
                            max_tokens: int, prompt: str = CITED_DRAFT_PROMPT, fallback_title: str = "",
                            sent_messages: list[dict] | None = None) -> Draft | None:
    """A draft as structured output (`messages`: cited_draft_messages, or revision_messages with
    writer.revise@5), rendered to Markdown with each sentence's note as its [n]. A reply cut at
    max_tokens keeps its complete sentences (salvage_structured); None when not one sentence came
    back (the caller writes a free-text draft instead)."""
    from tools.llm import LLMOutputInvalid

    if sent_messages is not None:
        sent_messages[:] = messages
    try:
        structured, result = await gateway.complete_json("writer", messages, StructuredDraft, thread_id=thread_id,
                                                         max_tokens=max_tokens)
    except LLMOutputInvalid as err:
        structured, result = salvage_structured(err.raw_text), err.result
        if structured is None:
            log.warning("structured draft unusable (%s): writing a free-text draft", str(err)[:200])
            return None
        log.info("structured draft stopped early (%s): kept its %d complete sentences", result.finish_reason,
                 sum(len(s.sentences) for s in structured.sections))
    title, body, dropped = render_structured(structured, notes)
    if not body:
        return None
    if dropped:
        log.info("draft named notes that are not in the notes: left uncited %s", dropped)
    return Draft(version=1, title=title or fallback_title[:200] or "Untitled", body=body, prompt=prompt,
                 model=result.model, dropped_citations=dropped)


async def write_sectioned_draft(gateway, *, topic: str, notes: ResearchNotes, outline: DraftOutline,
                                thread_id: str | None, max_tokens: int,
                                sent_messages: list[dict] | None = None) -> Draft | None:
    """A first draft written section by section (writer.draft_section@1), each call given only the
    notes its outline line names; rendered like a whole structured draft (each sentence's note as its
    [n], exactly as named). A section whose reply holds no complete sentence is left out; None when
    none does (the caller writes the post in one call). `sent_messages` receives every call's messages,
    in order. The sections share `max_tokens` (each at least SECTION_MIN_TOKENS)."""
    from tools.llm import LLMOutputInvalid

    cap = max(SECTION_MIN_TOKENS, max_tokens // len(outline.sections))
    sections, sent, model = [], [], ""
    for i in range(len(outline.sections)):
        messages = section_draft_messages(topic, notes, outline, i)
        sent.extend(messages)
        try:
            section, result = await gateway.complete_json("writer", messages, DraftSection, thread_id=thread_id,
                                                          max_tokens=cap)
        except LLMOutputInvalid as err:
            section, result = salvage_section(err.raw_text), err.result
            if section is None:
                log.warning("section %d of the draft unusable (%s): left out", i + 1, str(err)[:200])
                continue
        sections.append(section)
        model = model or result.model
    if sent_messages is not None:
        sent_messages[:] = sent
    if not sections:
        return None
    title, body, dropped = render_structured(
        StructuredDraft(title=outline.title or topic[:160] or "Untitled", sections=sections[:6]), notes)
    if not body:
        return None
    if dropped:
        log.info("draft named notes that are not in the notes: left uncited %s", dropped)
    return Draft(version=1, title=title, body=body, prompt=CITED_SECTION_PROMPT, model=model,
                 dropped_citations=dropped, reason="first")


# --- the human's desk: a draft as Markdown, edits, sections ---------------------------------------------

def draft_markdown(draft: Draft) -> str:
    """The draft as one Markdown text, the form a human edits (title line, then the body)."""
    return f"# {draft.title}\n\n{draft.body}"


class EditRefused(ValueError):
    """An edited draft that cannot become a draft version (the message says why; nothing changed)."""


def checked_edit(markdown: object, *, max_chars: int) -> str:
    """The edited Markdown, or EditRefused: text, not empty, no NUL (PostgreSQL text cannot hold
    it), at most `max_chars` characters (NEWSROOM_EDIT_MAX_CHARS)."""
    if not isinstance(markdown, str):
        raise EditRefused("the edited draft must be Markdown text")
    text = markdown.replace("\r\n", "\n").strip()
    if not text:
        raise EditRefused("the edited draft is empty")
    if len(text) > max_chars:
        raise EditRefused(f"the edited draft has {len(text)} characters; the limit is {max_chars} "
                          "(NEWSROOM_EDIT_MAX_CHARS)")
    if "\x00" in text:
        raise EditRefused("the edited draft holds a NUL character")
    return text


def human_edit(previous: Draft, markdown: str, *, reviewer: str) -> Draft:
    """The next draft version, written by a human: the first heading is its title (the previous
    title when there is none). Its [n] markers are kept as typed: the citation check judges them."""
    title, body = split_title(markdown, fallback=previous.title)
    return Draft(version=previous.version + 1, title=title, body=body or markdown.strip(), prompt=HUMAN_EDIT_PROMPT,
                 model=HUMAN_EDIT_MODEL, reason="human_edit", edited_by=reviewer[:200])


def edit_hash(previous: Draft, markdown: str) -> str:
    """The content hash of the draft an edit of `previous` becomes (what the ledger records)."""
    return human_edit(previous, markdown, reviewer="-").content_hash


def edit_size(before: Draft, after: Draft) -> dict:
    """How much a human changed: lines added / removed (a unified diff of the Markdown), characters."""
    added = removed = 0
    for line in difflib.unified_diff(draft_markdown(before).splitlines(), draft_markdown(after).splitlines(),
                                     lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return {"lines_added": added, "lines_removed": removed, "chars_before": len(draft_markdown(before)),
            "chars_after": len(draft_markdown(after))}


@dataclass(frozen=True)
class Section:
    heading: str  # the heading's text, without its #s
    level: int
    start: int  # line index of the heading
    end: int  # line index after the section's last line (the next heading of its level or higher)


def sections_of(body: str) -> list[Section]:
    """The body's ATX headings (# to ######) as sections, outside fenced code blocks. Line by
    line with str methods and an anchored match per line: linear on any text."""
    lines = body.split("\n")
    found: list[tuple[str, int, int]] = []
    fenced = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith(_FENCE):
            fenced = not fenced
            continue
        if fenced:
            continue
        m = _HEADING_OPEN.match(line)
        if m:
            text = line[m.end():].strip().rstrip("#").strip()
            if text:
                found.append((text, len(m.group(1)), i))
    out = []
    for k, (text, level, start) in enumerate(found):
        end = next((s for _, lv, s in found[k + 1:] if lv <= level), len(lines))
        out.append(Section(heading=text, level=level, start=start, end=end))
    return out


def _heading_key(text: str) -> str:
    return " ".join(text.strip().strip("#*_ ").casefold().split())


def find_section(body: str, name: str) -> Section | None:
    """The section whose heading is `name` (case, spacing and emphasis ignored), or None."""
    key = _heading_key(name)
    return next((s for s in sections_of(body) if _heading_key(s.heading) == key), None) if key else None


def section_text(body: str, section: Section) -> str:
    return "\n".join(body.split("\n")[section.start:section.end]).strip()


def replace_section(body: str, section: Section, new_text: str) -> str:
    """`body` with the section's content (below its heading line) replaced by `new_text`; a heading
    line the model repeated at the top of its answer is dropped, the rest of the draft is untouched."""
    lines = body.split("\n")
    new_lines = new_text.strip().split("\n")
    if new_lines and _HEADING_OPEN.match(new_lines[0]):
        new_lines = new_lines[1:]
    while new_lines and not new_lines[0].strip():
        new_lines = new_lines[1:]
    tail = lines[section.end:]
    return "\n".join([*lines[:section.start + 1], "", *new_lines, *([""] if tail else []), *tail]).strip()


def section_revision_messages(topic: str, notes: ResearchNotes, previous: Draft, section: Section,
                              feedback: str) -> list[dict]:
    return load_prompt(REVISE_SECTION_PROMPT).messages(
        topic=topic, notes=notes.notes, draft=draft_markdown(previous), section=section_text(previous.body, section),
        feedback=feedback)


async def rewrite_section(gateway, *, topic: str, notes: ResearchNotes, previous: Draft, section_name: str,
                          feedback: str, thread_id: str | None, max_tokens: int,
                          passed_sentences: list[str] | None = None,
                          sent_messages: list[dict] | None = None) -> Draft | None:
    """Version n+1 with only the named section rewritten (the rest kept byte for byte), or None
    when the draft has no such section (the caller revises the whole draft instead)."""
    section = find_section(previous.body, section_name)
    if section is None:
        return None
    messages = section_revision_messages(topic, notes, previous, section, feedback)
    if sent_messages is not None:
        sent_messages[:] = messages
    result = await gateway.complete_text("writer", messages, thread_id=thread_id, max_tokens=max_tokens)
    if not result.text.strip():
        raise ValueError("the writer model returned an empty section")
    new_text, dropped = keep_known_citations(result.text, notes)
    body = replace_section(previous.body, section, new_text)
    kept = sum(1 for s in (passed_sentences or []) if s and s in body)
    return Draft(version=previous.version + 1, title=previous.title, body=body, prompt=REVISE_SECTION_PROMPT,
                 model=result.model, reason="human_feedback", section=section.heading, dropped_citations=dropped,
                 kept_claims=kept)


# --- what the next draft is for -------------------------------------------------------------------

@dataclass(frozen=True)
class WriterTask:
    """What the Writer's next draft answers: the feedback it revises from, why it is written, the
    post's revision count once it is, the sentences of the last draft that passed the citation
    check (kept as they are), and the one section a human asked to rewrite (None: the whole draft)."""

    feedback: str | None
    reason: str  # first | human_feedback | editor_feedback | citation_feedback
    revision: int
    passed_sentences: list[str]
    section: str | None = None


def human_asked_for_revision(previous: Draft | None, decision) -> bool:
    """The human's last answer was a revise of the latest draft."""
    return (previous is not None and decision is not None and decision.draft_version == previous.version
            and decision.decision == "revise")


def next_draft_task(*, previous: Draft | None, review, decision, check, revision: int) -> WriterTask:
    """The next draft's task from the latest draft, the Editor's review, the human's decision and
    the latest draft's citation check: a human's revise first, then the judge's feedback (a revision
    cycle), then a failed citation check (a revision cycle too)."""
    if previous is None:
        return WriterTask(None, "first", revision, [])
    passed = [c.sentence for c in check.claims if c.status == "supported"] if check else []
    if human_asked_for_revision(previous, decision):
        return WriterTask(f"From the human reviewer: {decision.feedback}", "human_feedback", revision, passed,
                          section=decision.section)
    if review is not None and review.draft_version == previous.version:
        return WriterTask(feedback_for_writer(review.verdict, review.error), "editor_feedback", revision + 1, passed)
    if check is not None and not check.passed:
        return WriterTask(citation_feedback(check), "citation_feedback", revision + 1, passed)
    return WriterTask(None, "first", revision, passed)
