"""The desks' typed inputs and outputs (pure data; no I/O)."""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from agents.editor import EditorVerdict


class Citation(BaseModel):
    n: int  # the [n] marker used in notes and drafts
    chunk_id: str
    source_title: str
    source_path: str = ""
    heading: str = ""


class ResearchNotes(BaseModel):
    notes: str
    citations: list[Citation] = Field(default_factory=list)
    grounded: bool  # False: the LLM's own notes, no corpus behind them
    queries: list[str] = Field(default_factory=list)


class Draft(BaseModel):
    version: int
    title: str
    body: str
    prompt: str  # name@version of the template that produced it
    model: str
    reason: Literal["first", "editor_feedback", "human_feedback"] = "first"

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
    decision: Literal["approve", "revise", "reject"]
    reviewer: str = "unknown"
    feedback: str | None = None  # revise: what to change; reject: the reason
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
