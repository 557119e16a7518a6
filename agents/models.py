"""The desks' typed inputs and outputs (pure data; no I/O)."""
from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

# The Editor's structured outputs (judge verdict, claim checks, citation report): data, so that the
# other desks' models can carry them without importing the Editor's decisions.
Score = Literal[1, 2, 3, 4, 5]  # an enum, not min/max: llama.cpp grammars keep enums, drop bounds
Flag = Literal["none", "confident_hallucination"]
DIMENSIONS = ("technical_accuracy", "calibration", "mechanistic_depth", "audience_calibration")


class DimensionReasoning(BaseModel):
    model_config = ConfigDict(extra="forbid")
    technical_accuracy: str = Field(max_length=600)
    calibration: str = Field(max_length=600)
    mechanistic_depth: str = Field(max_length=600)
    audience_calibration: str = Field(max_length=600)


class EditorVerdict(BaseModel):
    """What the judge must return. Anything else is a judge failure, never an approval."""

    model_config = ConfigDict(extra="forbid")
    technical_accuracy: Score
    calibration: Score
    mechanistic_depth: Score
    audience_calibration: Score
    flag: Flag
    reasoning: DimensionReasoning

    @property
    def scores(self) -> dict[str, int]:
        return {d: getattr(self, d) for d in DIMENSIONS}

    @property
    def mean(self) -> float:
        return float(mean_score(*self.scores.values()))


def as_decimal(x: float) -> Decimal:
    # Decimal from the printed value: 3.25 stays 3.25, no binary-float drift at the boundary.
    return Decimal(str(x))


def mean_score(technical_accuracy, calibration, mechanistic_depth, audience_calibration) -> Decimal:
    parts = (technical_accuracy, calibration, mechanistic_depth, audience_calibration)
    return sum((as_decimal(x) for x in parts), Decimal(0)) / 4


ClaimStatus = Literal["supported", "unsupported", "not_a_claim", "unverifiable", "unchecked"]
MAX_CHECKED_CLAIMS = 24  # one structured call; more claims than this are checked by the rules alone


class ClaimVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int  # the claim's number in the request
    verdict: Literal["supported", "unsupported", "not_a_claim"]
    quote: str = Field(max_length=300)  # the source words that support it ("" if none)


class ClaimVerdicts(BaseModel):
    """What the claim-support call must return: one verdict per claim asked about."""

    model_config = ConfigDict(extra="forbid")
    claims: list[ClaimVerdict] = Field(max_length=MAX_CHECKED_CLAIMS)


class ClaimResult(BaseModel):
    sentence: str
    cites: list[int] = Field(default_factory=list)
    status: ClaimStatus
    problems: list[str] = Field(default_factory=list)
    quote: str = ""
    by: Literal["rules", "support", "judge", "kept", "none"] = "rules"  # support: the embedding check


class CitationReport(BaseModel):
    draft_version: int
    passed: bool
    claims: list[ClaimResult] = Field(default_factory=list)
    support_rate: float | None = None  # supported / cited claims checked (None: nothing to check)
    supported: int = 0
    checked: int = 0
    checked_by: str = "rules"  # "rules", "rules+support" (the embedding check ran), then "+<judge model>"
    grounded: bool = True
    error: str | None = None  # the claim-support call failed: only the rules decided

    @computed_field  # type: ignore[prop-decorator]
    @property
    def key(self) -> str:
        return f"citations-{self.draft_version}"

    @property
    def failures(self) -> list[ClaimResult]:
        return [c for c in self.claims if c.status == "unsupported"]


class Citation(BaseModel):
    n: int  # the [n] marker used in notes and drafts
    chunk_id: str
    source_title: str
    source_path: str = ""
    heading: str = ""
    url: str = ""  # a page fetched for this post (empty for corpus notes)
    excerpt: str = ""  # the text this source contributes: what a cited claim is checked against
    score: float | None = None  # cosine similarity to the best matching search vector


class SubQuestion(BaseModel):
    """One line of the research plan, with a sentence a note answering it might contain (its HyDE text)."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(min_length=3, max_length=200)
    hypothesis: str = Field(default="", max_length=400)


class PlannedSubQuestions(BaseModel):
    """What the planning LLM must return (validated; 3-5 sub-questions)."""

    model_config = ConfigDict(extra="forbid")
    sub_questions: list[SubQuestion] = Field(min_length=1, max_length=5)


class ResearchPlan(BaseModel):
    topic: str  # the request without its URLs
    sub_questions: list[SubQuestion] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)  # named in the request or passed as sources
    model: str = ""
    skipped: str | None = None  # why no plan was asked for (empty corpus, disabled)
    error: str | None = None  # the plan did not validate: retrieval used the topic alone
    # Whether the corpus had a chunk when the plan was made (None: retrieval not installed), so the
    # retrieve step that follows need not ask again. A plan checkpointed before this field lacks it
    # (not in model_fields_set): retrieve then asks.
    corpus_ready: bool | None = None


class Candidate(BaseModel):
    """A note (document) retrieval found for the post, with its best chunk."""

    chunk_id: str
    document_id: str
    source_path: str
    title: str
    heading: str = ""
    content: str
    score: float  # fused score (per-note aggregate)
    cosine: float  # best cosine similarity to any search vector: what the relevance floor tests
    queries: list[int] = Field(default_factory=list)  # which searches found it (0 = the topic)


class RetrievalResult(BaseModel):
    queries: list[str] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list)  # above the floor, best first
    below_floor: list[str] = Field(default_factory=list)  # titles of notes cut by the floor
    floor: float = 0.0
    best_cosine: float | None = None
    skipped: str | None = None


class FetchedSource(BaseModel):
    url: str
    ok: bool
    error: str | None = None
    title: str = ""
    source_path: str = ""  # the stored document (web/<thread>/<hash>)
    chunk: Candidate | None = None  # its excerpt for the notes


class ResearchNotes(BaseModel):
    notes: str
    citations: list[Citation] = Field(default_factory=list)
    grounded: bool  # False: the LLM's own notes, no corpus behind them
    queries: list[str] = Field(default_factory=list)
    ungrounded_reason: str | None = None  # said to the human at the gate
    fetch_errors: list[str] = Field(default_factory=list)  # "URL: reason", also shown at the gate

    def citation(self, n: int) -> Citation | None:
        return next((c for c in self.citations if c.n == n), None)


class Outline(BaseModel):
    """What the Writer's outline call must return."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=3, max_length=160)
    sections: list[str] = Field(min_length=2, max_length=6)


class DraftSentence(BaseModel):
    """One sentence of a structured draft and the note it comes from (0: it uses no note). The text
    comes first: the schema's order is the grammar's, so the model picks the note after writing the
    sentence (writer.draft@6; note first, @5, let the outline's section label pick it)."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=600)
    note: int = Field(ge=0, le=999)


class DraftSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heading: str = Field(min_length=1, max_length=160)
    sentences: list[DraftSentence] = Field(min_length=1, max_length=12)


class StructuredDraft(BaseModel):
    """What the Writer's structured draft call must return (writer.draft@6): every sentence names its
    note, and code renders the note numbers as the [n] markers (agents/writer.render_structured)."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=160)
    sections: list[DraftSection] = Field(min_length=1, max_length=6)


class DraftOutline(BaseModel):
    version: int  # the draft it is for
    title: str = ""
    sections: list[str] = Field(default_factory=list)
    model: str = ""
    error: str | None = None  # no valid outline: the draft was written from the notes alone
    source: Literal["llm", "plan"] = "llm"  # an outline call, or the research plan's questions (no call)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def key(self) -> str:
        return f"outline-{self.version}"


class Draft(BaseModel):
    version: int
    title: str
    body: str
    prompt: str  # name@version of the template that produced it
    model: str
    reason: Literal["first", "editor_feedback", "citation_feedback", "human_feedback", "human_edit"] = "first"
    edited_by: str | None = None  # human_edit: the reviewer who wrote this version (prompt "human-edit")
    section: str | None = None  # human_feedback on one section: the heading the Writer rewrote (the rest is kept)
    dropped_citations: list[int] = Field(default_factory=list)  # [n] the model wrote for no source: removed
    kept_claims: int = 0  # sentences that passed the last citation check and are still in this draft

    @computed_field  # type: ignore[prop-decorator]
    @property
    def key(self) -> str:
        return f"draft-{self.version}"

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(f"{self.title}\n\n{self.body}".encode()).hexdigest()


class Review(BaseModel):
    draft_version: int
    decision: Literal["approve", "reject", "invalid"]
    verdict: EditorVerdict | None = None
    mean: float | None = None
    judge_model: str = ""
    judge_prompt: str = ""  # name@version of the judge prompt behind the verdict
    attempts: int = 1
    error: str | None = None  # why the verdict was invalid

    @computed_field  # type: ignore[prop-decorator]
    @property
    def key(self) -> str:
        return f"review-{self.draft_version}"


class HumanDecision(BaseModel):
    # edit: the human's text becomes the next draft version, checked, then asked again;
    # approve_with_edits: the same, published at once when its citation check passes.
    decision: Literal["approve", "revise", "reject", "edit", "approve_with_edits"]
    reviewer: str = "unknown"
    feedback: str | None = None  # revise: what to change; reject: the reason
    section: str | None = None  # revise: the one section heading to rewrite (None: the whole draft)
    edited_version: int | None = None  # edit / approve_with_edits: the draft version the edit became
    payload_hash: str = ""
    answered_checkpoint: str | None = None
    draft_version: int = 0
    at: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def key(self) -> str:
        return f"decision-{self.draft_version}-{self.answered_checkpoint or self.payload_hash}"


class Publication(BaseModel):
    publish_key: str
    destination: str
    location: str
    draft_hash: str
    title: str
    replayed: bool = False  # True when the ledger already held this key (nothing published again)
    destinations: list[dict] = Field(default_factory=list)  # every destination's row (destination, location, key)


class EstimatedStep(BaseModel):
    """One kind of LLM call a post makes, priced at its route's model."""

    step: str  # e.g. "writer.draft"
    role: str  # the gateway role that serves it
    model: str
    calls_min: int = Field(ge=0)
    calls_max: int = Field(ge=0)
    tokens_in: int = Field(ge=0)  # per call, estimated from the prompt's parts
    tokens_out: int = Field(ge=0)  # per call: the step's max_tokens (a ceiling)
    usd_per_call: float = Field(ge=0)


class CostEstimate(BaseModel):
    """What a run is expected to cost and take before it starts: the fewest calls a grounded post
    approved at once makes (min) and every revision cycle and judge retry spent (max), each call
    at its max_tokens."""

    usd_min: float
    usd_max: float
    seconds_min: float
    seconds_max: float
    llm_calls_min: int
    llm_calls_max: int
    budget_usd: float | None = None
    steps: list[EstimatedStep] = Field(default_factory=list)

    def summary(self) -> str:
        def secs(s: float) -> str:
            return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"
        budget = f"; budget ${self.budget_usd:.4f}" if self.budget_usd is not None else ""
        return (f"estimate ${self.usd_min:.4f}-${self.usd_max:.4f}, {secs(self.seconds_min)}-{secs(self.seconds_max)}, "
                f"{self.llm_calls_min}-{self.llm_calls_max} LLM calls{budget}")


class BudgetStop(BaseModel):
    """The run stopped at a desk boundary because its spend passed its budget."""

    spent_usd: float
    budget_usd: float
    tokens: int = 0
    llm_calls: int = 0
    stopped_before: str  # the desk that would have run next
    draft_version: int | None = None  # the draft shown to the human (None: no draft yet)
