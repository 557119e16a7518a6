"""Recorded verdicts: the judge's raw reply per (item, judge, prompt version, decoding settings).

A JSONL file, one record per line, appended as replies arrive (a killed run keeps what it paid for).
The key covers everything that could change the reply: the judge's input (draft and notes), the
judge (provider, model, endpoint, and for the on-demand local server the weights file), the prompt
(name@version and a hash of its template text, so an edited template never reuses old replies) and
the decoding settings. Re-scoring parses the stored raw text again (agents.editor.parse_verdict),
so a change in verdict parsing shows up in the figures without a model call.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class JudgeIdentity(BaseModel):
    """Which judge answered: enough to tell two judges apart, nothing secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    provider: str
    model: str
    endpoint: str
    weights: str | None = None  # the GGUF behind an on-demand llama.cpp alias (its name and size)

    @property
    def label(self) -> str:
        # the weights file's name (its size, also in `weights`, only tells two builds apart)
        return f"{self.provider}:{(self.weights or '').split(' (')[0] or self.model}"


class Decoding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    temperature: float = 0.0
    max_tokens: int = Field(ge=16)
    schema_sha: str  # the EditorVerdict JSON schema the judge was asked to fill


class VerdictRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    item_id: str
    input_sha: str
    prompt_ref: str
    prompt_sha: str
    judge: JudgeIdentity
    decoding: Decoding
    raw_text: str
    served_model: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    recorded_at: str = ""


def verdict_key(*, item_id: str, input_sha: str, prompt_ref: str, prompt_sha: str, judge: JudgeIdentity,
                decoding: Decoding) -> str:
    payload = json.dumps([item_id, input_sha, prompt_ref, prompt_sha, judge.model_dump(), decoding.model_dump()],
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


class VerdictStoreError(ValueError):
    pass


class VerdictStore:
    """The records of one JSONL file, by key; `add` appends (and fsyncs) one line."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        self.records: dict[str, VerdictRecord] = {}
        if self.path is not None and self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            for n, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    rec = VerdictRecord.model_validate_json(line)
                except ValidationError as err:
                    if n == len(lines):
                        continue  # a last line cut short by a killed run: its call is simply redone
                    raise VerdictStoreError(f"{self.path}:{n}: not a verdict record: {err.errors()[0]['msg']}") from None
                self.records[rec.key] = rec

    def get(self, key: str) -> VerdictRecord | None:
        return self.records.get(key)

    def add(self, record: VerdictRecord) -> None:
        if not record.recorded_at:
            record.recorded_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.records[record.key] = record
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(record.model_dump_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def judges(self) -> list[JudgeIdentity]:
        """The judges recorded here, in first-seen order."""
        return list(dict.fromkeys(r.judge for r in self.records.values()))

    def prompts_of(self, judge: JudgeIdentity) -> list[str]:
        return list(dict.fromkeys(r.prompt_ref for r in self.records.values() if r.judge == judge))

    def decodings_of(self, judge: JudgeIdentity, prompt_ref: str) -> list[Decoding]:
        return list(dict.fromkeys(r.decoding for r in self.records.values()
                                  if r.judge == judge and r.prompt_ref == prompt_ref))
