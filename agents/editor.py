"""The Editor desk: an LLM-as-judge verdict and the exact approval decision function.

Rubric and gate from the curriculum's Phase 11 (judge calibrated to r=0.861 against humans):
APPROVE iff technical_accuracy >= 3.0 AND calibration >= 3.0 AND mean >= 3.25 AND flag !=
confident_hallucination. At most 3 revision cycles, then a human decides.
"""
from __future__ import annotations

import functools
import json
import logging
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.prompts import RenderedPrompt, load_prompt

log = logging.getLogger(__name__)

Score = Literal[1, 2, 3, 4, 5]  # an enum, not min/max: llama.cpp grammars keep enums, drop bounds
Flag = Literal["none", "confident_hallucination"]
DIMENSIONS = ("technical_accuracy", "calibration", "mechanistic_depth", "audience_calibration")

GATE_MIN_TECHNICAL_ACCURACY = Decimal("3.0")
GATE_MIN_CALIBRATION = Decimal("3.0")
GATE_MIN_MEAN = Decimal("3.25")


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


def _dec(x: float | int) -> Decimal:
    # Decimal from the printed value: 3.25 stays 3.25, no binary-float drift at the boundary.
    return Decimal(str(x))


def mean_score(technical_accuracy, calibration, mechanistic_depth, audience_calibration) -> Decimal:
    return (_dec(technical_accuracy) + _dec(calibration) + _dec(mechanistic_depth) + _dec(audience_calibration)) / 4


def approve_or_revise(
    technical_accuracy: float, calibration: float, mechanistic_depth: float, audience_calibration: float, flag: str
) -> Literal["approve", "reject"]:
    """The Editor's gate, exactly as calibrated. Pure: no I/O, no model."""
    if flag == "confident_hallucination":
        return "reject"
    if _dec(technical_accuracy) < GATE_MIN_TECHNICAL_ACCURACY or _dec(calibration) < GATE_MIN_CALIBRATION:
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


# The version graphs/ uses unless NEWSROOM_JUDGE_PROMPT names another (@1 stays loadable, for
# calibration runs that compare versions).
DEFAULT_JUDGE_PROMPT = "editor.judge@2"


def judge_prompt(topic: str, title: str, body: str, notes: str,
                 prompt_ref: str = DEFAULT_JUDGE_PROMPT) -> RenderedPrompt:
    """The judge's messages for one draft. @2+ put the topic, notes and draft in delimited data
    blocks (agents/prompts); @1 interpolates them into one message as it always did."""
    return load_prompt(prompt_ref).render(topic=topic, title=title, body=body, notes=notes,
                                          draft=f"# {title}\n\n{body}", schema=_verdict_schema_text())


def judge_messages(topic: str, title: str, body: str, notes: str, prompt_ref: str = DEFAULT_JUDGE_PROMPT) -> list[dict]:
    return judge_prompt(topic, title, body, notes, prompt_ref).messages


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
    max_attempts: int, max_tokens: int, prompt_ref: str = DEFAULT_JUDGE_PROMPT,
):
    """Ask the judge for a verdict; retry invalid ones; an invalid verdict never approves.

    Returns a Review with decision approve | reject | invalid (invalid -> the graph escalates).
    A draft or notes holding the prompt's data delimiter (an injection that guessed or learned it)
    is not graded at all: invalid, so a human decides.
    """
    from agents.models import Review
    from tools.llm import LLMOutputInvalid, LLMUnavailable

    rendered = judge_prompt(topic, title, body, notes, prompt_ref)
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
