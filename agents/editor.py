"""The Editor desk: an LLM-as-judge verdict and the exact approval decision function.

Rubric and gate from the curriculum's Phase 11 (judge calibrated to r=0.861 against humans):
APPROVE iff technical_accuracy >= 3.0 AND calibration >= 3.0 AND mean >= 3.25 AND flag !=
confident_hallucination. At most 3 revision cycles, then a human decides.
"""
from __future__ import annotations

import functools
import html
import json
import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from agents.models import (  # noqa: F401 - the verdict models are re-exported: callers import them from here
    DIMENSIONS,
    MAX_CHECKED_CLAIMS,
    CitationReport,
    ClaimResult,
    ClaimStatus,
    ClaimVerdict,
    ClaimVerdicts,
    DimensionReasoning,
    EditorVerdict,
    Flag,
    Review,
    Score,
    as_decimal,
    mean_score,
)
from agents.prompts import RenderedPrompt, load_prompt

log = logging.getLogger(__name__)


GATE_MIN_TECHNICAL_ACCURACY = Decimal("3.0")
GATE_MIN_CALIBRATION = Decimal("3.0")
GATE_MIN_MEAN = Decimal("3.25")


def approve_or_revise(
    technical_accuracy: float, calibration: float, mechanistic_depth: float, audience_calibration: float, flag: str
) -> Literal["approve", "reject"]:
    """The Editor's gate, exactly as calibrated. Pure: no I/O, no model."""
    if flag == "confident_hallucination":
        return "reject"
    if as_decimal(technical_accuracy) < GATE_MIN_TECHNICAL_ACCURACY or as_decimal(calibration) < GATE_MIN_CALIBRATION:
        return "reject"
    mean = mean_score(technical_accuracy, calibration, mechanistic_depth, audience_calibration)
    return "approve" if mean >= GATE_MIN_MEAN else "reject"


def decide(verdict: EditorVerdict) -> Literal["approve", "reject"]:
    return approve_or_revise(
        verdict.technical_accuracy, verdict.calibration, verdict.mechanistic_depth,
        verdict.audience_calibration, verdict.flag,
    )


def next_step_after_review(
    decision: Literal["approve", "reject", "invalid"], revisions_used: int, max_revisions: int, policy: str,
    *, human_asked_for_revision: bool = False,
) -> Literal["publish", "await_human", "revise", "escalate"]:
    """Where a reviewed draft goes: the revision budget and the approval policy applied.

    Under escalations_only an approved draft publishes directly, unless a human already asked for a
    revision of this post: the draft written from their feedback goes back to them (it would
    otherwise publish unseen, the judge's approval standing in for the person who asked)."""
    if decision == "invalid":
        return "escalate"
    if decision == "approve":
        return "publish" if policy == "escalations_only" and not human_asked_for_revision else "await_human"
    return "revise" if revisions_used < max_revisions else "escalate"


@functools.cache
def _verdict_schema_text() -> str:
    # Generated once: pydantic rebuilds a schema on every call (a few ms of CPU per judge call).
    return json.dumps(EditorVerdict.model_json_schema()["properties"], separators=(",", ":"))


def judge_prompt(topic: str, title: str, body: str, notes: str, *, prompt_ref: str) -> RenderedPrompt:
    """The judge's messages for one draft from the prompt named `prompt_ref` (name@version): the Editor
    desk passes NEWSROOM_JUDGE_PROMPT (the only place a default is chosen), `newsroom eval-judge` each
    version it compares. @2+ put the topic, notes and draft in delimited data blocks (agents/prompts);
    @1 interpolates them into one message as it always did."""
    return load_prompt(prompt_ref).render(topic=topic, title=title, body=body, notes=notes,
                                          draft=f"# {title}\n\n{body}", schema=_verdict_schema_text())


def judge_messages(topic: str, title: str, body: str, notes: str, *, prompt_ref: str) -> list[dict]:
    return judge_prompt(topic, title, body, notes, prompt_ref=prompt_ref).messages


def parse_verdict(text: str) -> EditorVerdict:
    """A judge's raw reply read exactly as the gateway reads it (fences, lenient newlines, the model's
    validation); raises tools.llm.LLMOutputInvalid. `newsroom eval-judge` re-scores recorded replies
    through this, so a change in verdict parsing shows in the calibration figures."""
    from tools.llm import parse_structured

    return parse_structured(EditorVerdict, text)


def feedback_for_writer(verdict: EditorVerdict | None, error: str | None = None) -> str:
    """Per-dimension feedback the Writer revises from (low scores first)."""
    if verdict is None:
        return f"The editor could not grade the draft ({error or 'invalid verdict'})."
    lines = []
    for dim in sorted(DIMENSIONS, key=lambda d: getattr(verdict, d)):
        lines.append(f"- {dim} {getattr(verdict, dim)}/5: {getattr(verdict.reasoning, dim)}")
    if verdict.flag == "confident_hallucination":
        lines.insert(0, "- FLAG confident_hallucination: remove or correct every claim the research notes do not support.")
    return "\n".join(lines)


async def review_draft(
    gateway, *, topic: str, title: str, body: str, notes: str, draft_version: int, thread_id: str | None,
    max_attempts: int, max_tokens: int, prompt_ref: str,
):
    """Ask the judge for a verdict; retry invalid ones; an invalid verdict never approves.

    Returns a Review with decision approve | reject | invalid (invalid -> the graph escalates).
    A draft or notes holding the prompt's data delimiter (an injection that guessed or learned it)
    is not graded at all: invalid, so a human decides.
    """
    from tools.llm import LLMOutputInvalid, LLMUnavailable

    rendered = judge_prompt(topic, title, body, notes, prompt_ref=prompt_ref)
    if rendered.flagged:
        return Review(draft_version=draft_version, decision="invalid", attempts=0, judge_prompt=prompt_ref,
                      error=f"the {' and '.join(rendered.flagged)} held the prompt's data delimiter: treated as a "
                            "prompt injection, not graded")
    messages = rendered.messages
    errors: list[str] = []
    invalid_by_model: dict[str, int] = {}
    for attempt in range(1, max_attempts + 1):
        # A model that failed twice is skipped: the gateway falls back to the next judge route.
        skip = {m for m, n in invalid_by_model.items() if n >= 2}
        try:
            verdict, result = await gateway.complete_json(
                "judge", messages, EditorVerdict, thread_id=thread_id, max_tokens=max_tokens, exclude_models=skip
            )
        except LLMOutputInvalid as err:
            model = getattr(getattr(err, "result", None), "model", "") or "?"
            invalid_by_model[model] = invalid_by_model.get(model, 0) + 1
            errors.append(f"attempt {attempt} ({model}): invalid verdict: {str(err)[:300]}")
            log.warning("judge %s returned an invalid verdict (attempt %d/%d)", model, attempt, max_attempts)
            continue
        except LLMUnavailable as err:
            errors.append(f"attempt {attempt}: judge unavailable: {str(err)[:300]}")
            break
        return Review(draft_version=draft_version, decision=decide(verdict), verdict=verdict,
                      mean=verdict.mean, judge_model=result.model, attempts=attempt, judge_prompt=prompt_ref)
    return Review(draft_version=draft_version, decision="invalid", attempts=len(errors), judge_prompt=prompt_ref,
                  error="; ".join(errors)[:2000] or "no verdict")


# --- the citation check: a gate in front of the rubric judge ---------------------------------------
#
# Deterministic rules first (every [n] exists; every number in a cited sentence occurs in the cited
# source, or is marked "(derived)" and follows from two of its numbers by one operation; no uncited
# sentence states a number or repeats a source nearly word for word; a cited sentence shares at
# least some terms with its source), then the model-free support check (wrong source, uncited claim:
# below), then one batched call on the judge route that labels every cited claim supported / unsupported / not a claim
# with a quote from the source; a "supported" whose quote is not in the source counts as unsupported.
# All regexes here are linear-time (no nested quantifiers): drafts are untrusted text.

CLAIMS_PROMPT = "editor.claims@1"
LEXICAL_MIN_OVERLAP = 0.2  # share of a cited sentence's content words found in its sources
COPIED_MIN_OVERLAP = 0.8  # an uncited sentence this close to a source took a fact from it

_MARKER = re.compile(r"\[(\d{1,3}(?:\s{0,2}[,;]\s{0,2}\d{1,3}){0,9})\]")
_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:[eE][-+]?\d{1,3})?)(?:\s?(k|K|M|B|%|x|×)(?![A-Za-z]))?")
# A sentence ends at . ! ? before a capital, a digit, a marker ... or a lowercase word ("pgvector 0.8
# added ...", "vLLM pages ..."), unless the full stop ends an abbreviation ("e.g. the", "vs. MHA").
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[\[(\"'A-Za-z0-9*_])")
_ABBREV_END = re.compile(r"(?:\b(?:e\.g|i\.e|vs|etc|cf|approx|incl|resp|al|fig|eq|ca)\.|(?<![A-Za-z])[A-Za-z]\.)$",
                         re.IGNORECASE)
_BULLET = re.compile(r"^\s{0,6}(?:\d{1,3}[.)]|[-*+])\s+")
_WORD = re.compile(r"[a-z][a-z0-9-]{3,}")
# The word or number just before a number, when it makes a name with it (bounded look-behind text).
_NAME_BEFORE = re.compile(r"(?:^|[\s(])([A-Z][A-Za-z0-9.]{0,20}-?|\d{1,4}(?:\.\d{1,3})?)\s?$")
_DERIVED = re.compile(r"\(derived\b|\bderived:", re.IGNORECASE)
_STOP = frozenset("""this that with from have they their there these those which while where when what will would
could should into than then them been being does done also more most much many such some very only other each
about over under just like make makes made using used uses because between both same every first second after
before again still even here your yours ours itself while whose within without across around through however""".split())


# A sentence that only talks about the post or its reader states no fact: "This post explains prefix
# caching and PagedAttention.", "In this article we compare ...", "Let's look at ...". It is not a
# claim (no restatement check, no claim call), unless it holds a number (the uncited-number rule
# still applies) or reports a finding ("This post shows that ...", "Here is what happens: ...").
_ABOUT_THE_POST = re.compile(
    r"^(?:(?:in|throughout|for)\s{1,3})?(?:this|the\s{1,3}rest\s{1,3}of\s{1,3}this|the\s{1,3}next|today's)\s{1,3}"
    r"(?:post|article|piece|essay|guide|tutorial|write-?up|section|chapter)\b"
    r"|^here(?:'s|\s{1,3}(?:is|are)\s{1,3}(?:what|how|why|where|when|which)\b|\s{1,3}(?:we|i)\b)"
    r"|^(?:(?:first|next|now|finally|so),?\s{1,3})?(?:let(?:'s|\s{1,3}us)|we(?:'ll|\s{1,3}will)|i(?:'ll|\s{1,3}will))"
    r"\s{1,3}(?:look|see|start|begin|walk|turn|dig|take|go|step|move|break|examine|compare|consider|cover|explain|"
    r"show|work|put|focus)\b", re.IGNORECASE)
_REPORTS_A_FINDING = re.compile(r"\b(?:shows?|showed|explains?|argues?|finds?|found|proves?|demonstrates?|concludes?|"
                                r"confirms?|claims?|means?)\s{1,3}that\b", re.IGNORECASE)


def about_the_post(sentence: str) -> bool:
    """The sentence only talks about the post or its reader (see _ABOUT_THE_POST). Pure."""
    text = sentence.strip().lstrip("*_\"'(").replace("\u2019", "'")
    m = _ABOUT_THE_POST.match(text)
    if m is None or _REPORTS_A_FINDING.search(text):
        return False
    # "Here is what happens: the scheduler preempts ..." gives the content after its colon
    return not (m.group(0).lower().startswith("here") and re.search(r"[:;]", text))


@dataclass(frozen=True)
class Sentence:
    text: str  # as written, markers included
    plain: str  # markers removed
    cites: tuple[int, ...]


def split_sentences(body: str) -> list[Sentence]:
    """The draft's sentences with the [n] markers each carries (a marker after the full stop
    belongs to the sentence before it). Headings and code are not claims."""
    out: list[Sentence] = []
    in_code = False
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            continue
        if in_code or not stripped or stripped.startswith("#"):
            continue
        stripped = _BULLET.sub("", stripped, count=1)
        pieces: list[str] = []
        for piece in _SENT_END.split(stripped):
            if pieces and _ABBREV_END.search(pieces[-1]):
                pieces[-1] += " " + piece
            else:
                pieces.append(piece)
        for piece in pieces:
            piece = piece.strip()
            if not piece:
                continue
            lead = _MARKER.match(piece)
            if lead and out and lead.start() == 0:
                # "...heads. [1] Next sentence": the leading marker cites the previous sentence.
                prev = out[-1]
                cites = tuple(dict.fromkeys(prev.cites + tuple(_marker_numbers(lead.group(1)))))
                out[-1] = Sentence(prev.text + " " + lead.group(0), prev.plain, cites)
                piece = piece[lead.end():].strip()
                if not piece:
                    continue
            cites = tuple(dict.fromkeys(n for m in _MARKER.finditer(piece) for n in _marker_numbers(m.group(1))))
            plain = _MARKER.sub("", piece).strip()
            if plain:
                out.append(Sentence(piece, plain, cites))
    return out


def _marker_numbers(inner: str) -> list[int]:
    return [int(x) for x in re.split(r"[,;]", inner) if x.strip().isdigit()]


def cited_numbers(text: str) -> list[int]:
    """Every [n] number in a text, in order of first use."""
    return list(dict.fromkeys(n for m in _MARKER.finditer(text) for n in _marker_numbers(m.group(1))))


def _number_forms(raw: str, suffix: str | None) -> set[Decimal]:
    v = Decimal(raw.replace(",", ""))
    forms = {v}
    if suffix in ("k", "K"):
        forms |= {v * 1000, v * 1024}
    elif suffix == "M":
        forms |= {v * 1_000_000, v * 1024 * 1024}
    elif suffix == "B":
        forms |= {v * 1_000_000_000}
    return {f.normalize() for f in forms}


def numbers_in(text: str, *, names_in: str | None = None) -> list[tuple[str, set[Decimal]]]:
    """(as written, its values) for every number in the text, [n] markers excluded. With
    `names_in` (source text), a number that is part of a name found there is left out: "Llama 3.1
    8B", "GPT-2", "PostgreSQL 18" name what a sentence is about, they are not its claim."""
    text = _MARKER.sub(" ", text)
    names = _name_norm(names_in) if names_in else None
    out = []
    for m in _NUMBER.finditer(text):
        if names is not None and _names_a_thing(text, m, names):
            continue
        out.append((m.group(0).strip(), _number_forms(m.group(1), m.group(2))))
    return out


def _names_a_thing(text: str, m: re.Match, names: str) -> bool:
    """The number at `m` continues a capitalised word or another number ("Llama 3.1", "3.1 8B",
    "GPT-2"), and that name occurs in `names` (source text, case kept: "All 46.7B" at the start of
    a sentence is not the source's "all 46.7B")."""
    prev = _NAME_BEFORE.search(text[max(0, m.start() - 40):m.start()])
    if prev is None:
        return False
    name = _name_norm(prev.group(1) + " " + m.group(0))
    return bool(name) and f" {name} " in f" {names} "


def _name_norm(text: str) -> str:
    return " ".join(re.sub(r"[^A-Za-z0-9.%]+", " ", text).split())


def _values(text: str) -> set[Decimal]:
    """Every value a text states: its numbers in digits and its counts in words ("four", "fourfold")."""
    vals: set[Decimal] = set()
    for _, forms in numbers_in(text):
        vals |= forms
    for c in word_counts(text):
        vals.add(c.value)
    return vals


# --- counts written in words, and what a number counts ---------------------------------------------
#
# "eight query heads" is a number as much as "8 query heads". A count in words that counts a named
# thing ("eight query heads", not "all three") is checked like a number in digits in a cited
# sentence (it must occur in the cited source, in words or digits), and
# against what the source counts: when the source gives a number for the same thing ("32 query
# heads", "Four query heads share ..."), the sentence's count must be one of them. "one" is a count
# only for that second check (as a value it is everywhere: "one of the", "the same one", "one way").
# Counts in uncited sentences are not flagged: "two sides of the same deployment", "Two traps:" are
# prose, and an uncited fact is the support check's to find.

_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_WORD_COUNT = re.compile(
    r"(?<![\w-])(?:(" + "|".join(_TENS) + r")(?:-(" + "|".join(_UNITS[1:10]) + r"))?|(" + "|".join(_UNITS[::-1])
    + r")|(twice|a\s{1,3}dozen))(fold)?(?![\w])", re.IGNORECASE)
# Words that end the phrase a count counts: "four query heads share each" counts "query heads".
_FUNCTION = frozenset("""a an the this that these those of to in on at by for from with and or but nor per than as
is are was were be been being has have had do does did can could will would should may might must it its they them
their we you he she his her our your which who whom whose what where when while x times more less fewer another
other others so then there here only also instead again into onto over under after before about around up down
out off too very such same just even both each every all some any no not because since although though if unless
until whereas whether yet how why""".split())
_THING_WORD = re.compile(r"[\s-]{1,3}([A-Za-z][A-Za-z0-9_]{0,30}(?:-[A-Za-z0-9_]{1,30}){0,3})")
# A determiner before "one" makes it a pronoun: "the preferred one", "this one number", "a new one".
_ONE_PRONOUN = re.compile(r"(?:^|\W)(?:the|this|that|a|an|no|any|each|every|which|what|same|new|preferred)\s{1,3}$",
                          re.IGNORECASE)


@dataclass(frozen=True)
class Count:
    written: str
    value: Decimal
    thing: tuple[str, ...]  # stems of the (up to two) words it counts: ("query", "head")
    start: int


def _stem(word: str) -> str:
    w = word.lower()
    return (w[:-1] if w.endswith("s") and len(w) > 3 else w)[:6]


def _thing_after(text: str, end: int) -> tuple[str, ...]:
    """Stems of the up to two words after a number, up to punctuation, a number or a function word."""
    out: list[str] = []
    pos = end
    while len(out) < 2:
        m = _THING_WORD.match(text, pos)
        if m is None or m.group(1).lower() in _FUNCTION:
            break
        out.append(_stem(m.group(1)))
        pos = m.end()
    return tuple(out)


def word_counts(text: str, *, with_one: bool = False) -> list[Count]:
    """Counts written in words ("four", "twenty-four", "eightfold", "twice", "a dozen"), [n] markers
    excluded. "one" only with `with_one`, and not after a determiner ("the same one")."""
    text = _MARKER.sub(" ", text)
    out = []
    for m in _WORD_COUNT.finditer(text):
        tens, unit, small, other, _fold = m.groups()
        if tens:
            value = _WORD_VALUE[tens.lower()] + (_WORD_VALUE[unit.lower()] if unit else 0)
        elif small:
            value = _WORD_VALUE[small.lower()]
            if value == 1 and (not with_one or _ONE_PRONOUN.search(text[max(0, m.start() - 20):m.start()])):
                continue
            if value == 0:
                continue
        else:
            value = 2 if other.lower() == "twice" else 12
        out.append(Count(m.group(0), Decimal(value), _thing_after(text, m.end()), m.start()))
    return out


@functools.lru_cache(maxsize=64)
def _source_sentences(text: str) -> tuple[tuple[frozenset[str], frozenset[Decimal], tuple[Count, ...]], ...]:
    """Per sentence of a source (computed once per source text): its content words, the values it
    states and what it counts."""
    out = []
    for s in split_sentences(text):
        plain = _MARKER.sub(" ", s.plain)
        counts = [Count(m.group(0), Decimal(m.group(1).replace(",", "")).normalize(), _thing_after(plain, m.end()),
                        m.start()) for m in _NUMBER.finditer(plain)]
        counts += word_counts(plain, with_one=True)
        out.append((frozenset(_content_words(plain)), frozenset(_values(plain)), tuple(counts)))
    return tuple(out)


COUNT_MIN_SHARED_TERMS = 2  # a source sentence sharing fewer content words than this states another fact


MAX_COMPARED_COUNTS = 24  # counts in words per sentence compared with the source's (bounded work)


def same_fact_counts(words: set[str], source_text: str) -> list[tuple[Count, frozenset[str]]]:
    """The source's counts in sentences sharing >= COUNT_MIN_SHARED_TERMS of a sentence's content
    `words`: the counts of the fact it states."""
    return [(c, terms) for terms, _, counts in _source_sentences(source_text)
            if len(words & terms) >= COUNT_MIN_SHARED_TERMS for c in counts]


def counted_elsewise(count: Count, same_fact: list[tuple[Count, frozenset[str]]]) -> list[Decimal] | None:
    """The numbers the source gives for the thing `count` counts, when `count` is none of them; else
    None. `same_fact`: same_fact_counts of the sentence. The same thing: the source's count whose
    phrase shares the most words with the one counted ("query heads" over "KV heads"; "separate
    transactions" and "database transaction" share one). A number with no phrase in a sentence
    that counts the thing ("... with one writer and 1.67 times with four") counts it too. Pure."""
    if not count.thing:
        return None
    thing = set(count.thing)
    scored = [(len(thing & set(c.thing)), c.value, terms) for c, terms in same_fact]
    best = max((n for n, _, _ in scored), default=0)
    if best == 0:
        return None
    values = {v for n, v, _ in scored if n == best}
    holding = {terms for n, _, terms in scored if n}
    values |= {c.value for c, terms in same_fact if not c.thing and terms in holding}
    return None if count.value in values else sorted(values)


def values_by_fact(words: set[str], source_text: str) -> tuple[frozenset[Decimal], frozenset[Decimal]]:
    """(values the source states in sentences sharing a content word with the sentence's `words`,
    values it states only in sentences sharing none)."""
    related: set[Decimal] = set()
    other: set[Decimal] = set()
    for terms, values, _ in _source_sentences(source_text):
        (related if words & terms else other).update(values)
    return frozenset(related), frozenset(other - related)


def number_in_other_fact(forms: set[Decimal], words: set[str], source_text: str) -> bool:
    """True when the source states this number only in sentences that share none of the sentence's
    terms: "r = 16 was the sweet spot" against a source whose 16 is in "r = 8 or 16 is enough for a
    persona" and whose sweet spot is r = 32. `words`: the sentence's content words (>= 3 needed). Pure."""
    if len(words) < 3:
        return False
    related, other = values_by_fact(words, source_text)
    return bool(forms & other) and not forms & related


def _derivable(target: set[Decimal], source: set[Decimal]) -> bool:
    """True if one of the target's values is a op b for two source numbers (+, -, x, /)."""
    src = sorted(source)[:80]  # bounded: 80^2 pairs
    for a in src:
        for b in src:
            for v in (a * b, a + b, a - b) + ((a / b,) if b else ()):
                if v.normalize() in target or any(abs(v - t) <= abs(t) * Decimal("0.005") for t in target):
                    return True
    return False


def _content_words(text: str) -> set[str]:
    return {w[:6] for w in _WORD.findall(text.lower()) if w not in _STOP}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9.%]+", " ", text.lower()).split())


def quote_in_source(quote: str, source: str) -> bool:
    """The quote occurs in the source (case, punctuation and spacing aside), or 8 of its words in a row do."""
    q, s = _norm(quote), _norm(source)
    if not q:
        return False
    if q in s:
        return True
    words = q.split()
    if len(words) < 8:
        return False
    return any(" ".join(words[i:i + 8]) in s for i in range(len(words) - 7))


def cited_text(c) -> str:
    """What a citation gives the writer: the note's title and heading (they name what its numbers
    are about: "Llama 3.1 8B in numbers") and the excerpt."""
    return "\n".join(x for x in (c.source_title, c.heading, c.excerpt or "") if x)


def _copied_from(sentence: str, notes) -> int | None:
    """The source an uncited sentence repeats nearly word for word (>= 80% of >= 6 content words)."""
    words = _content_words(sentence)
    if len(words) < 6:
        return None
    for c in notes.citations:
        if len(words & _content_words(c.excerpt or "")) / len(words) >= COPIED_MIN_OVERLAP:
            return c.n
    return None


def check_rules(body: str, notes, *, kept: dict[str, ClaimResult] | None = None) -> list[ClaimResult]:
    """The deterministic checks, per sentence. `notes` is a ResearchNotes; `kept` maps sentences that
    passed in an earlier draft to their result (an identical sentence keeps it, unchecked again)."""
    kept = kept or {}
    results: list[ClaimResult] = []
    everything = "\n".join(cited_text(c) for c in notes.citations)
    for s in split_sentences(body):
        if s.plain in kept:
            results.append(kept[s.plain].model_copy(update={"by": "kept", "cites": list(s.cites)}))
            continue
        nums = numbers_in(s.plain, names_in=everything)
        if not s.cites:
            copied = _copied_from(s.plain, notes) if notes.grounded else None
            if nums and notes.grounded:
                results.append(ClaimResult(sentence=s.text, status="unsupported", problems=[
                    f"states {', '.join(n for n, _ in nums)} without a citation"]))
            elif copied is not None:
                results.append(ClaimResult(sentence=s.text, status="unsupported", problems=[
                    f"repeats source [{copied}] without citing it"]))
            elif nums:
                results.append(ClaimResult(sentence=s.text, status="unverifiable", by="none", problems=[
                    f"states {', '.join(n for n, _ in nums)}; the research is ungrounded, so nothing can confirm it"]))
            elif about_the_post(s.plain):
                results.append(ClaimResult(sentence=s.text, status="not_a_claim", by="rules"))
            else:
                results.append(ClaimResult(sentence=s.text, status="not_a_claim", by="none"))
            continue
        problems: list[str] = []
        sources = []
        for n in s.cites:
            c = notes.citation(n)
            if c is None:
                problems.append(f"cites [{n}], which is not in the research notes")
            else:
                sources.append(cited_text(c))
        source_text = "\n".join(sources)
        if sources:
            have = _values(source_text)
            derived = bool(_DERIVED.search(s.plain))
            where = ", ".join(f"[{n}]" for n in s.cites)
            stated = nums + [(c.written, {c.value}) for c in word_counts(s.plain) if c.thing]
            terms = _content_words(s.plain)
            related, other = values_by_fact(terms, source_text) if len(terms) >= 3 else (have, frozenset())
            for written, forms in stated:
                if forms & have:
                    if not derived and forms & other and not forms & related:
                        problems.append(f"{written} occurs in {where} only in sentences about something else")
                    continue
                if derived and _derivable(forms, have):
                    continue
                problems.append(f"{written} does not occur in {where}" + ("" if derived else
                                " (mark a computed number '(derived)')"))
            same_fact = same_fact_counts(terms, source_text)
            for c in word_counts(s.plain, with_one=True)[:MAX_COMPARED_COUNTS]:
                elsewise = counted_elsewise(c, same_fact)
                if elsewise and not (derived and _derivable({c.value}, have)):
                    problems.append(f"\"{c.written}\" ({' '.join(c.thing)}...): {where} counts that as "
                                    f"{', '.join(format(v, 'f') for v in elsewise)}")
            if len(terms) >= 4:
                overlap = len(terms & _content_words(source_text)) / len(terms)
                if overlap < LEXICAL_MIN_OVERLAP:
                    problems.append(f"shares almost none of its terms with {', '.join(f'[{n}]' for n in s.cites)} "
                                    f"({overlap:.0%}): wrong source?")
        results.append(ClaimResult(sentence=s.text, cites=list(s.cites), status="unsupported" if problems else "unchecked",
                                   problems=problems))
    return results


# --- the support check: between the rules and the claim call --------------------------------------
#
# Model-free and deterministic: the draft's sentences and the notes' sentences as unit vectors of the
# project's sentence embedder (tools/embeddings computes them; they are passed in), plus the share
# of a sentence's content words its note contains. A sentence's support by note n is the mean of its
# best cosine against one of n's sentences and that word share. A cited sentence that another note
# supports clearly better than the one it cites is a wrong source; an uncited sentence that a note
# supports as strongly as a restatement is an uncited claim. Both name the note, so a revision can
# cite it. The two thresholds were chosen on the tuning half of the planted set and the independent
# clean drafts (`python -m evals.faithfulness.tune_support`), never on the half that is reported.

SUPPORT_MIN_RESTATEMENT = 0.52  # an uncited sentence supported this well by a note restates it
SUPPORT_MIN_MARGIN = 0.30  # a cited sentence another note supports by this much more has the wrong source
SUPPORT_MIN_WORDS = 2  # fewer content words than this: too little to compare


def support_passages(notes) -> dict[int, list[str]]:
    """What a draft sentence is compared with: each note's excerpt split into sentences as a draft is."""
    return {c.n: [s.plain for s in split_sentences(c.excerpt or "")] or [c.excerpt or ""] for c in notes.citations}


def support_texts(body: str, notes) -> list[str]:
    """Every text the support check needs a vector for: the draft's sentences (markers removed) and
    the notes' sentences, each once."""
    texts = [s.plain for s in split_sentences(body)]
    texts += [p for ps in support_passages(notes).values() for p in ps]
    return list(dict.fromkeys(t for t in texts if t))


def support_scores(sentence: str, notes, vectors) -> dict[int, float]:
    """Support of one sentence (plain text) by each note: (best cosine against one of the note's
    sentences + share of the sentence's content words found in the note) / 2. `vectors` maps each
    text of support_texts to its unit vector."""
    import numpy as np

    v = vectors[sentence]
    words = _content_words(sentence)
    out: dict[int, float] = {}
    for n, passages in support_passages(notes).items():
        c = notes.citation(n)
        known = [vectors[p] for p in passages if p in vectors]
        if not known:  # an empty excerpt: nothing to support anything
            continue
        cos = float(max(np.dot(v, p) for p in known))
        share = len(words & _content_words(c.excerpt or "")) / len(words) if words else 0.0
        out[n] = round((cos + share) / 2, 4)
    return out


def better_source(scores: dict[int, float], cites, *, min_margin: float = SUPPORT_MIN_MARGIN
                  ) -> tuple[int, float, float] | None:
    """(the note, its support, the best cited note's support) when a note the sentence does not cite
    supports it by `min_margin` more than every note it cites; else None. Pure."""
    cited = [scores[n] for n in cites if n in scores]
    others = [(v, n) for n, v in scores.items() if n not in cites]
    if not cited or not others:
        return None
    best, n = max(others)
    return (n, best, max(cited)) if best - max(cited) >= min_margin else None


def restated_source(scores: dict[int, float], *, min_restatement: float = SUPPORT_MIN_RESTATEMENT
                    ) -> tuple[int, float] | None:
    """(the note, its support) when an uncited sentence is supported as strongly as a restatement of
    that note (>= `min_restatement`); else None. Pure."""
    if not scores:
        return None
    best, n = max((v, n) for n, v in scores.items())
    return (n, best) if best >= min_restatement else None


def check_support(results: list[ClaimResult], notes, vectors, *, min_restatement: float = SUPPORT_MIN_RESTATEMENT,
                  min_margin: float = SUPPORT_MIN_MARGIN) -> list[ClaimResult]:
    """The support check over the rules' results: cited sentences the rules passed (wrong source?)
    and, when the research is grounded, uncited sentences the rules passed (an uncited claim?).
    Sentences the rules flagged or an earlier draft kept are left as they are. The thresholds are
    parameters for the threshold study (evals/faithfulness/tune_support.py) only."""
    out = []
    for c in results:
        plain = _MARKER.sub("", c.sentence).strip()
        if plain not in vectors or len(_content_words(plain)) < SUPPORT_MIN_WORDS:
            out.append(c)
            continue
        if c.status == "unchecked" and c.cites:
            found = better_source(support_scores(plain, notes, vectors), c.cites, min_margin=min_margin)
            if found:
                n, best, cited = found
                where = ", ".join(f"[{m}]" for m in c.cites)
                c = c.model_copy(update={"status": "unsupported", "by": "support", "problems": [
                    f"reads like source [{n}] (support {best:.2f}), not {where} ({cited:.2f}): cite [{n}], or "
                    f"check that {where} says it"]})
        elif c.status == "not_a_claim" and c.by == "none" and not c.cites and notes.grounded:
            found = restated_source(support_scores(plain, notes, vectors), min_restatement=min_restatement)
            if found:
                n, best = found
                c = c.model_copy(update={"status": "unsupported", "by": "support", "problems": [
                    f"restates source [{n}] (support {best:.2f}) without citing it: cite [{n}]"]})
        out.append(c)
    return out


@functools.cache
def _claims_schema_text() -> str:
    return json.dumps(ClaimVerdicts.model_json_schema(), separators=(",", ":"))


def claims_messages(claims: list[ClaimResult], notes) -> list[dict]:
    """One request for every claim still to check: the cited sources once each, the claims numbered."""
    used = sorted({n for c in claims for n in c.cites if notes.citation(n) is not None})
    sources = "\n\n".join(f"[{n}] <source>\n{html.escape(notes.citation(n).excerpt, quote=False)}\n</source>"
                          for n in used)
    listed = "\n".join(f"{i}. {html.escape(_MARKER.sub('', c.sentence).strip(), quote=False)} "
                       f"(cites {', '.join(f'[{n}]' for n in c.cites) or 'nothing'})" for i, c in enumerate(claims, 1))
    return load_prompt(CLAIMS_PROMPT).messages(sources=sources, claims=listed, n=str(len(claims)),
                                               schema=_claims_schema_text())


def apply_claim_verdicts(claims: list[ClaimResult], verdicts: ClaimVerdicts, notes) -> list[ClaimResult]:
    """The judge's labels applied: a 'supported' needs its quote in a cited source. Raises
    ValueError if the verdicts do not answer exactly the claims asked about."""
    by_id = {v.id: v for v in verdicts.claims}
    if sorted(by_id) != list(range(1, len(claims) + 1)):
        raise ValueError(f"verdicts for claims {sorted(by_id)}, expected 1..{len(claims)}")
    out = []
    for i, c in enumerate(claims, 1):
        v = by_id[i]
        source = "\n".join(notes.citation(n).excerpt for n in c.cites if notes.citation(n) is not None)
        if not c.cites:  # an uncited sentence: fine unless it states a fact
            if v.verdict == "not_a_claim":
                out.append(c.model_copy(update={"status": "not_a_claim", "by": "judge"}))
            else:
                out.append(c.model_copy(update={"status": "unsupported", "by": "judge", "quote": v.quote[:300],
                                                "problems": ["states a fact without a citation"]}))
            continue
        if v.verdict == "supported" and not quote_in_source(v.quote, source):
            out.append(c.model_copy(update={"status": "unsupported", "by": "judge", "quote": v.quote[:300],
                                            "problems": c.problems + ["the judge's quote is not in the cited source"]}))
        elif v.verdict == "unsupported":
            out.append(c.model_copy(update={"status": "unsupported", "by": "judge", "quote": v.quote[:300],
                                            "problems": c.problems + ["the cited source does not support it"]}))
        else:
            out.append(c.model_copy(update={"status": v.verdict, "by": "judge", "quote": v.quote[:300]}))
    return out


def citation_report(draft_version: int, results: list[ClaimResult], *, grounded: bool, checked_by: str,
                    error: str | None = None) -> CitationReport:
    """Passed iff no claim is unsupported. The support rate counts cited claims (and uncited numbers)."""
    counted = [c for c in results if c.status in ("supported", "unsupported", "unchecked")]
    supported = sum(c.status == "supported" for c in counted)
    # unchecked (the judge call failed or was off) counts as supported only by the rules' verdict
    rules_only = sum(c.status == "unchecked" for c in counted)
    rate = ((supported + rules_only) / len(counted)) if counted else None
    return CitationReport(draft_version=draft_version, passed=not any(c.status == "unsupported" for c in results),
                          claims=results, support_rate=None if rate is None else round(rate, 4),
                          supported=supported + rules_only, checked=len(counted), checked_by=checked_by,
                          grounded=grounded, error=error)


# A Writer revision that keeps less than this share of the previous draft's words dropped the post
# instead of fixing it (seen at the demo on Qwen2.5-Coder-1.5B: told to fix or remove 7 claims, it
# answered with the title alone, 274 -> 9 words, which then passed with no claim and was approved).
MIN_REVISION_SHARE = 0.35
WHOLE_DRAFT = "(the whole draft)"


def collapsed_revision(body: str, previous_words: int | None) -> str | None:
    """Why a revision is not a draft any more, or None. Only drafts of some length are compared
    (a short draft may shrink), and only Writer revisions (a human may cut as they like)."""
    if not previous_words or previous_words < 60:
        return None
    words = len(body.split())
    if words >= MIN_REVISION_SHARE * previous_words:
        return None
    return (f"the revision has {words} word{'' if words == 1 else 's'} where the previous draft had {previous_words}: it dropped the "
            "post instead of fixing its claims; rewrite the whole post and fix only the claims listed")


async def check_citations(gateway, *, body: str, notes, draft_version: int, thread_id: str | None,
                          use_judge: bool, max_tokens: int, previous: CitationReport | None = None,
                          attempts: int = 2, previous_words: int | None = None,
                          support_vectors=None) -> CitationReport:
    """Rules, then the support check (when `support_vectors`, the unit vectors of support_texts, are
    given), then (use_judge) one batched claim-support call on the judge route. Never raises for a
    bad or missing judge: its failure is recorded and the rules' verdict stands. `previous_words`:
    the length of the draft a Writer revision replaces (a collapsed revision fails as a whole)."""
    from tools.llm import LLMOutputInvalid, LLMUnavailable

    kept = {}
    if previous is not None:
        kept = {_MARKER.sub("", c.sentence).strip(): c for c in previous.claims if c.status == "supported"}
    results = check_rules(body, notes, kept=kept)
    checked_by = "rules"
    if support_vectors is not None:
        results = check_support(results, notes, support_vectors)
        checked_by = "rules+support"
    collapsed = collapsed_revision(body, previous_words)
    if collapsed:
        results.insert(0, ClaimResult(sentence=WHOLE_DRAFT, status="unsupported", problems=[collapsed]))
    # Cited claims the rules passed, and (grounded posts) uncited sentences: the judge says whether
    # each is supported by what it cites, or states a fact with no citation at all.
    todo = [i for i, c in enumerate(results) if c.status == "unchecked"
            or (notes.grounded and c.status == "not_a_claim" and c.by == "none")][:MAX_CHECKED_CLAIMS]
    # A draft the rules already send back is not worth an LLM call (local post time): its
    # revision is checked in full.
    if not use_judge or not todo or any(c.status == "unsupported" for c in results):
        return citation_report(draft_version, results, grounded=notes.grounded, checked_by=checked_by)
    claims = [results[i] for i in todo]
    messages = claims_messages(claims, notes)
    errors: list[str] = []
    for attempt in range(1, attempts + 1):
        try:
            verdicts, result = await gateway.complete_json("judge", messages, ClaimVerdicts, thread_id=thread_id,
                                                           max_tokens=max_tokens)
            checked = apply_claim_verdicts(claims, verdicts, notes)
        except (LLMOutputInvalid, ValueError) as err:
            errors.append(f"attempt {attempt}: {str(err)[:300]}")
            log.warning("claim check: invalid verdicts (attempt %d/%d)", attempt, attempts)
            continue
        except LLMUnavailable as err:
            errors.append(f"judge unavailable: {str(err)[:300]}")
            break
        for i, c in zip(todo, checked):
            results[i] = c
        return citation_report(draft_version, results, grounded=notes.grounded,
                               checked_by=f"{checked_by}+{result.model}")
    return citation_report(draft_version, results, grounded=notes.grounded, checked_by=checked_by,
                           error="; ".join(errors)[:1000])


def citation_feedback(report: CitationReport) -> str:
    """What the Writer revises from: each failing sentence and why, and what to keep."""
    lines = ["The citation check found claims the research notes do not support. Fix each one: correct it "
             "from its source, cite the right source, or remove that sentence. Keep the rest of the post."]
    for c in report.failures:
        lines.append(f'- "{_MARKER.sub("", c.sentence).strip()[:300]}": {"; ".join(c.problems) or "unsupported"}')
    keep = [c for c in report.claims if c.status == "supported"]
    if keep:
        lines.append("Keep these sentences and their citations exactly as they are (they passed):")
        lines += [f"- {c.sentence[:300]}" for c in keep]
    return "\n".join(lines)
