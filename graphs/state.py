"""Typed state of one post's run.

Nodes receive a validated PostState and return partial updates as plain JSON (model_dump), so
checkpoints, Studio and the SDK all see JSON, and the models validate it on the way back in.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from agents.editor import CitationReport, EditorVerdict
from agents.models import (
    BudgetStop,
    Citation,
    CostEstimate,
    Draft,
    DraftOutline,
    FetchedSource,
    HumanDecision,
    Publication,
    ResearchNotes,
    ResearchPlan,
    RetrievalResult,
    Review,
)


def _item_key(item: Any) -> str:
    if isinstance(item, BaseModel):
        item = item.model_dump(mode="json")
    if isinstance(item, dict):
        if item.get("key") is not None:
            return str(item["key"])
        # No key: the item's whole content. A missing key must never make two different items
        # look alike (a decision without one once swallowed every later decision of its thread).
        return json.dumps(item, sort_keys=True, default=str)
    return repr(item)


def append_new(existing: list | None, new: list | None) -> list:
    """Append reducer keyed by each item's `key`: a desk subgraph hands back its whole state,
    so an item already in the history must not be appended twice."""
    existing = list(existing or [])
    seen = {_item_key(x) for x in existing}
    for item in new or []:
        k = _item_key(item)
        if k not in seen:
            existing.append(item)
            seen.add(k)
    return existing


class PostState(BaseModel):
    # --- the request
    topic: str = Field(min_length=1, max_length=500)
    requester: str = "cli"
    source: Literal["cli", "telegram", "studio", "web", "api", "test"] | str = "cli"
    sources: list[str] = Field(default_factory=list, max_length=20)  # URLs to fetch besides those in the topic
    # --- the desks' work
    plan: ResearchPlan | None = None  # Researcher: the topic without URLs, sub-questions, URLs
    retrieval: RetrievalResult | None = None  # Researcher: notes found above the relevance floor
    fetched: list[FetchedSource] | None = None  # Researcher: the named pages, fetched or why not
    research: ResearchNotes | None = None  # Researcher: the numbered notes the Writer cites
    outlines: Annotated[list[DraftOutline], append_new] = Field(default_factory=list)
    drafts: Annotated[list[Draft], append_new] = Field(default_factory=list)
    citation_checks: Annotated[list[CitationReport], append_new] = Field(default_factory=list)
    reviews: Annotated[list[Review], append_new] = Field(default_factory=list)
    revision: int = 0  # Editor-driven revision cycles used (max settings.max_revisions)
    # --- cost (agents/supervisor.py: estimate_run, route_next)
    cost_estimate: CostEstimate | None = None  # made on the run's first step, before any LLM call
    spent_usd: float = 0.0  # the post's recorded LLM cost, read at the last desk boundary (runs with a budget only)
    budget_stop: BudgetStop | None = None  # the run passed its budget: the draft went to a human
    # --- the human gate
    decisions: Annotated[list[HumanDecision], append_new] = Field(default_factory=list)
    escalated: bool = False
    escalation_reason: str | None = None
    # --- the outcome
    publication: Publication | None = None
    outcome: Literal["pending", "published", "rejected", "failed"] = "pending"
    error: str | None = None

    @property
    def latest_draft(self) -> Draft | None:
        return self.drafts[-1] if self.drafts else None

    @property
    def latest_review(self) -> Review | None:
        return self.reviews[-1] if self.reviews else None

    @property
    def latest_decision(self) -> HumanDecision | None:
        return self.decisions[-1] if self.decisions else None

    def citation_check_for(self, version: int) -> CitationReport | None:
        return next((c for c in reversed(self.citation_checks) if c.draft_version == version), None)

    def outline_for(self, version: int) -> DraftOutline | None:
        return next((o for o in reversed(self.outlines) if o.version == version), None)


class PostInput(BaseModel):
    """What a caller passes to start a run (CLI, Telegram, Studio)."""

    topic: str = Field(min_length=1, max_length=500)
    requester: str = "cli"
    source: str = "cli"
    sources: list[str] = Field(default_factory=list, max_length=20)  # URLs to fetch and cite (`--source URL`)


__all__ = [
    "Citation",
    "CitationReport",
    "Draft",
    "EditorVerdict",
    "HumanDecision",
    "PostInput",
    "PostState",
    "Publication",
    "ResearchNotes",
    "Review",
    "append_new",
]
