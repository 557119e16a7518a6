"""Writer eval for adapter promotion: faithfulness to the notes (and, optionally, the Editor's judge).

    items = eval_items(limit=6)                       # built from evals/corpus, deterministic
    report = await evaluate_writer(gateway, "newsroom-writer-2", items)
    beats(candidate_report, current_report)           # the promotion rule

Each item is the production first-draft prompt (agents/writer.py) on notes made from one corpus
note: its first sections as sources [1] and [2]. Per draft, deterministically:
- cited: it has at least one [n] marker and every marker names a source in the notes;
- numbers: the share of the numbers it states that occur in the notes (1.0 when it states none).
faithfulness = mean over items of (cited + numbers) / 2, in [0, 1]. With a judge route, the
Editor's rubric mean (1-5) of each draft is added; an invalid verdict counts as 1.

A candidate beats the current adapter when its faithfulness is higher, or equal and (judged) its
judge mean is higher; a tie is no win. Generation is at temperature 0, so the comparison repeats.
The judge-calibration eval (issue 15) was not on main when this was written: when it lands, its
calibrated judge is the better second criterion.
"""
from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
# Notes whose text carries numbers a draft can get right or wrong.
DEFAULT_NOTES = ("kv-cache-arithmetic", "grouped-query-attention", "lora-low-rank-adaptation",
                 "qlora-4bit-finetuning", "vllm-pagedattention", "speculative-decoding",
                 "quantization-formats", "flash-attention")
MAX_SOURCE_CHARS = 600
_CITE = re.compile(r"\[(\d{1,3})\]")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)*)(?![\w])")


@dataclass(frozen=True)
class EvalItem:
    id: str
    topic: str
    notes: str
    sources: tuple[int, ...]


def _sections(text: str) -> tuple[str, list[str]]:
    body = re.sub(r"^---\n.*?\n---\n", "", text, flags=re.DOTALL)
    title = next((ln[2:].strip() for ln in body.splitlines() if ln.startswith("# ")), "")
    parts = [p.strip() for p in re.split(r"^## .*$", body, flags=re.MULTILINE)]
    paras = [re.sub(r"^# .*$", "", p, flags=re.MULTILINE).strip() for p in parts]
    return title, [p for p in paras if p]


def eval_items(limit: int | None = None, corpus: Path = CORPUS, names: tuple[str, ...] = DEFAULT_NOTES) -> list[EvalItem]:
    items = []
    for name in names[:limit] if limit else names:
        path = corpus / f"{name}.md"
        if not path.exists():
            continue
        title, sections = _sections(path.read_text(encoding="utf-8"))
        blocks = [f'[{n}] <source title="{html.escape(title, quote=True)}">\n'
                  f"{html.escape(text[:MAX_SOURCE_CHARS], quote=False)}\n</source>"
                  for n, text in enumerate(sections[:2], start=1)]
        items.append(EvalItem(id=name, topic=title, notes="\n\n".join(blocks), sources=tuple(range(1, len(blocks) + 1))))
    return items


def eval_set_hash(items: list[EvalItem]) -> str:
    return hashlib.sha256(json.dumps([asdict(i) for i in items], sort_keys=True).encode()).hexdigest()


def _norm(num: str) -> str:
    return num.replace(",", "")


def score_draft(text: str, item: EvalItem) -> dict:
    cites = {int(n) for n in _CITE.findall(text)}
    cited = bool(cites) and cites <= set(item.sources)
    notes_numbers = {_norm(n) for n in _NUMBER.findall(item.notes)}
    stated = [_norm(n) for n in _NUMBER.findall(_CITE.sub("", text))]
    numbers = (sum(n in notes_numbers for n in stated) / len(stated)) if stated else 1.0
    return {"cited": cited, "markers": sorted(cites), "numbers_supported": round(numbers, 4),
            "numbers_stated": len(stated), "faithfulness": round((float(cited) + numbers) / 2, 4)}


@dataclass
class WriterReport:
    model: str
    faithfulness: float
    judge_mean: float | None
    items: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


async def evaluate_writer(gateway, model: str, items: list[EvalItem], *, max_tokens: int = 220,
                          judge: bool = False) -> WriterReport:
    """Drafts from `model` (the gateway's writer role, restricted to that model) for each item, scored."""
    from agents import editor
    from agents.models import ResearchNotes
    from agents.writer import draft_messages, split_title
    from config import get_settings
    from tools.llm import LLMOutputInvalid, LLMUnavailable

    rows = []
    for item in items:
        msgs = draft_messages(item.topic, ResearchNotes(notes=item.notes, grounded=True))
        result = await gateway.complete_text("writer", msgs, max_tokens=max_tokens, temperature=0.0)
        row = {"id": item.id, **score_draft(result.text, item), "tokens_out": result.tokens_out}
        if judge:
            title, body = split_title(result.text, fallback=item.topic)
            try:
                verdict, _ = await gateway.complete_json(
                    "judge", editor.judge_messages(item.topic, title, body, item.notes, prompt_ref=get_settings().judge_prompt),
                    editor.EditorVerdict)
                row["judge_mean"] = verdict.mean
            except (LLMOutputInvalid, LLMUnavailable) as err:
                row["judge_mean"], row["judge_error"] = 1.0, str(err)[:200]
        rows.append(row)
    faith = round(sum(r["faithfulness"] for r in rows) / len(rows), 4) if rows else 0.0
    jm = round(sum(r["judge_mean"] for r in rows) / len(rows), 4) if judge and rows else None
    return WriterReport(model=model, faithfulness=faith, judge_mean=jm, items=rows)


def beats(candidate: dict, current: dict) -> bool:
    """The promotion rule: strictly better faithfulness, or equal and a strictly better judge mean."""
    if candidate["faithfulness"] != current["faithfulness"]:
        return candidate["faithfulness"] > current["faithfulness"]
    cj, uj = candidate.get("judge_mean"), current.get("judge_mean")
    return cj is not None and uj is not None and cj > uj
