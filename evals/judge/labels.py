"""The labelled set: drafts with human scores, loaded from Markdown files with TOML front matter.

One file per draft in evals/judge/drafts/ (GUIDE.md is the labelling guide):

    +++
    topic = "How grouped-query attention shrinks the KV cache"
    sources = ["grouped-query-attention.md"]      # corpus notes the judge is given (evals/corpus)
    defect = "wrong_number"                       # what was planted (none for a good post)
    planted = "says 8 KV heads share 64 query heads"
    flag = "confident_hallucination"
    [scores]
    technical_accuracy = 2
    ...
    [reasons]                                     # one line per score
    technical_accuracy = "the 4:1 ratio is given as 8:1 ..."
    +++
    # Title

    Body ...

A draft pulled from a Langfuse annotation queue carries its research notes inline (`notes = "..."`)
instead of `sources`. The human decision is never stored: it is the Editor's exact decision
function (agents.editor.approve_or_revise) applied to the human scores, so the gold decisions
follow the gate the product runs.
"""
from __future__ import annotations

import hashlib
import html
import json
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents import editor
from agents.editor import DIMENSIONS, Flag, Score

JUDGE_DIR = Path(__file__).resolve().parent
DEFAULT_SET = JUDGE_DIR / "drafts"
CORPUS_DIR = JUDGE_DIR.parent / "corpus"

Defect = Literal["none", "wrong_number", "invented_mechanism", "overclaiming", "shallow", "wrong_audience",
                 "unplanted"]
DEFECTS: tuple[str, ...] = ("none", "wrong_number", "invented_mechanism", "overclaiming", "shallow",
                            "wrong_audience", "unplanted")
_FRONT = re.compile(r"\A\+\+\+\n(.*?)\n\+\+\+\n(.*)\Z", re.DOTALL)
_TITLE = re.compile(r"\A#[ \t]+(.+?)[ \t]*\n(.*)\Z", re.DOTALL)


class LabelError(ValueError):
    """A labelled draft that does not follow the format or the guide's rules (file and reason)."""


class Scores(BaseModel):
    model_config = ConfigDict(extra="forbid")
    technical_accuracy: Score
    calibration: Score
    mechanistic_depth: Score
    audience_calibration: Score


class Reasons(BaseModel):
    model_config = ConfigDict(extra="forbid")
    technical_accuracy: str = Field(min_length=8, max_length=400)
    calibration: str = Field(min_length=8, max_length=400)
    mechanistic_depth: str = Field(min_length=8, max_length=400)
    audience_calibration: str = Field(min_length=8, max_length=400)


class LabelledDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=120)
    topic: str = Field(min_length=3, max_length=300)
    title: str = Field(min_length=3, max_length=300)
    body: str = Field(min_length=40)
    sources: list[str] = Field(default_factory=list)
    notes: str | None = None
    defect: Defect
    planted: str = ""
    flag: Flag
    scores: Scores
    reasons: Reasons
    # where a pulled draft came from (Langfuse annotation queue)
    origin: Literal["written", "langfuse"] = "written"
    trace_id: str | None = None
    observation_id: str | None = None
    queue_id: str | None = None

    @model_validator(mode="after")
    def _notes_or_sources(self) -> LabelledDraft:
        if bool(self.sources) == bool(self.notes):
            raise ValueError("give either sources (corpus files) or notes (inline), not both or neither")
        if self.defect not in ("none", "unplanted") and not self.planted:
            raise ValueError(f"defect {self.defect!r} needs `planted`: what was planted, and where")
        return self

    @property
    def human_scores(self) -> dict[str, int]:
        return self.scores.model_dump()

    @property
    def human_decision(self) -> str:
        """The gate's decision on the human scores: the Editor's own function, looked up at call time."""
        s = self.scores
        return editor.approve_or_revise(s.technical_accuracy, s.calibration, s.mechanistic_depth,
                                        s.audience_calibration, self.flag)

    @property
    def human_mean(self) -> float:
        return sum(self.human_scores.values()) / len(DIMENSIONS)

    def rendered_notes(self, corpus: Path = CORPUS_DIR) -> str:
        return self.notes if self.notes is not None else notes_from_corpus(self.sources, corpus)

    def judge_input(self, corpus: Path = CORPUS_DIR) -> dict[str, str]:
        """What the judge grades: the same four fields the Editor desk hands it."""
        return {"topic": self.topic, "title": self.title, "body": self.body, "notes": self.rendered_notes(corpus)}

    def input_sha(self, corpus: Path = CORPUS_DIR) -> str:
        """Identity of the judge's input (not of the labels): a changed draft or note is a new input."""
        return hashlib.sha256(json.dumps(self.judge_input(corpus), sort_keys=True).encode()).hexdigest()


def notes_from_corpus(sources: list[str], corpus: Path = CORPUS_DIR) -> str:
    """The named corpus notes, numbered and quoted as the Researcher quotes retrieved text
    (agents.researcher.notes_from_chunks), but whole: the labels were checked against the full note,
    and a 700-character excerpt could drop the fact a label depends on."""
    blocks = []
    for n, name in enumerate(sources, start=1):
        path = corpus / name
        if not path.is_file():
            raise LabelError(f"source {name!r} is not a note in {corpus}")
        text = path.read_text(encoding="utf-8")
        if text.startswith("---\n"):
            text = text.split("\n---\n", 1)[1] if "\n---\n" in text else text
        m = re.search(r"^#[ \t]+(.+)$", text, re.MULTILINE)
        title = m.group(1).strip() if m else path.stem
        blocks.append(f'[{n}] <source title="{html.escape(title, quote=True)}">\n'
                      f"{html.escape(text.strip(), quote=False)}\n</source>")
    return "\n\n".join(blocks)


def parse_draft(text: str, draft_id: str) -> LabelledDraft:
    m = _FRONT.match(text.replace("\r\n", "\n"))
    if not m:
        raise LabelError(f"{draft_id}: expected TOML front matter between '+++' lines, then '# Title'")
    try:
        meta = tomllib.loads(m.group(1))
    except tomllib.TOMLDecodeError as err:
        raise LabelError(f"{draft_id}: front matter: {err}") from None
    t = _TITLE.match(m.group(2).lstrip("\n"))
    if not t:
        raise LabelError(f"{draft_id}: the draft must start with a '# Title' line")
    try:
        return LabelledDraft(id=draft_id, title=t.group(1), body=t.group(2).strip(), **meta)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(draft)'}: {e['msg']}" for e in err.errors())
        raise LabelError(f"{draft_id}: {problems}") from None


def load_set(path: Path = DEFAULT_SET, *, corpus: Path = CORPUS_DIR) -> list[LabelledDraft]:
    """Every *.md under `path` (sorted; subfolders included), validated; an unusable file is an error."""
    path = Path(path)
    files = sorted(path.rglob("*.md")) if path.is_dir() else [path]
    if not files:
        raise LabelError(f"no labelled drafts (*.md) in {path}")
    drafts, seen = [], {}
    for f in files:
        d = parse_draft(f.read_text(encoding="utf-8"), f.stem)
        if d.id in seen:
            raise LabelError(f"{f}: id {d.id!r} also used by {seen[d.id]}")
        seen[d.id] = f
        if d.sources:
            notes_from_corpus(d.sources, corpus)  # every named source exists
        drafts.append(d)
    return drafts


def guide_violations(d: LabelledDraft) -> list[str]:
    """The guide's hard rules for a planted defect (GUIDE.md, 'Defects and the scores they force')."""
    s, out = d.scores, []
    if d.defect in ("wrong_number", "invented_mechanism"):
        if d.flag != "confident_hallucination":
            out.append("a planted false fact stated as fact sets the flag")
        if s.technical_accuracy > 3:
            out.append("a false number or mechanism caps technical_accuracy at 3")
    if d.defect == "invented_mechanism" and s.mechanistic_depth > 3:
        out.append("an invented mechanism earns no depth credit: mechanistic_depth <= 3")
    if d.defect == "overclaiming" and s.calibration > 2:
        out.append("overclaiming caps calibration at 2")
    if d.defect == "shallow" and s.mechanistic_depth > 2:
        out.append("a what-not-how draft caps mechanistic_depth at 2")
    if d.defect == "wrong_audience" and s.audience_calibration > 2:
        out.append("a draft for the wrong reader caps audience_calibration at 2")
    if d.defect == "none":
        if d.flag != "none":
            out.append("a good post carries no flag")
        if min(s.model_dump().values()) < 3:
            out.append("a good post scores at least 3 everywhere")
    return out


def toml_string(s: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, except that TOML also wants DEL escaped)."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def render_draft(d: LabelledDraft) -> str:
    """The file form of a labelled draft (used for drafts pulled from Langfuse)."""
    lines = ["+++", f"topic = {toml_string(d.topic)}"]
    if d.sources:
        lines.append("sources = [" + ", ".join(toml_string(s) for s in d.sources) + "]")
    else:
        lines.append(f"notes = {toml_string(d.notes or '')}")
    lines += [f"defect = {toml_string(d.defect)}", f"planted = {toml_string(d.planted)}",
              f"flag = {toml_string(d.flag)}", f"origin = {toml_string(d.origin)}"]
    for key in ("trace_id", "observation_id", "queue_id"):
        if getattr(d, key):
            lines.append(f"{key} = {toml_string(getattr(d, key))}")
    lines.append("[scores]")
    lines += [f"{k} = {v}" for k, v in d.scores.model_dump().items()]
    lines.append("[reasons]")
    lines += [f"{k} = {toml_string(v)}" for k, v in d.reasons.model_dump().items()]
    lines += ["+++", f"# {d.title}", "", d.body.strip(), ""]
    return "\n".join(lines)
