"""The CI gate: recorded verdicts re-scored, compared with the figures they gave when they were accepted.

    newsroom eval-judge --route recorded --recorded evals/judge/recorded/verdicts.jsonl \\
        --check evals/judge/recorded/expected.json

No model is called. What is compared, per run (judge x prompt version): every item's human
decision, judge decision and parse status, the judge's parsed scores and flag, and the summary
figures (r, MAE, decision accuracy and kappa, invalid rate, flag confusion). So a change in the
decision function (agents.editor.approve_or_revise), in verdict parsing (tools.llm.parse_structured)
or in the scoring code (evals.judge.metrics / run) that moves any decision or figure fails the gate,
with the difference printed. An intended change is accepted by writing the file again
(`--write-expected`) and committing it with the change that caused it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from evals.judge.run import Run, item_table

# Figures that describe this invocation rather than the recorded verdicts.
VOLATILE = ("calls", "cache_hits", "unavailable", "wall_s", "cost_usd_this_run", "route")


def snapshot(runs: Sequence[Run], summaries: Sequence[dict]) -> dict:
    out = {}
    for run, summary in zip(runs, summaries, strict=True):
        out[run.label] = {"summary": {k: v for k, v in summary.items() if k not in VOLATILE},
                          "items": item_table(run)}
    return {"gate": "judge-calibration", "runs": out}


def write_expected(path: Path, snap: dict) -> None:
    Path(path).write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _diff(expected, actual, where: str, out: list[str], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(expected, dict) and isinstance(actual, dict):
        for k in sorted(set(expected) | set(actual)):
            if k not in actual:
                out.append(f"{where}.{k}: expected {json.dumps(expected[k])[:120]}, now absent")
            elif k not in expected:
                out.append(f"{where}.{k}: new, {json.dumps(actual[k])[:120]}")
            else:
                _diff(expected[k], actual[k], f"{where}.{k}", out, limit)
    elif expected != actual:
        out.append(f"{where}: expected {json.dumps(expected)[:120]}, got {json.dumps(actual)[:120]}")


def compare(expected: dict, actual: dict, limit: int = 40) -> list[str]:
    """Differences, most telling first (decisions before figures); [] = the gate passes."""
    diffs: list[str] = []
    exp_runs, act_runs = expected.get("runs", {}), actual.get("runs", {})
    for label in sorted(set(exp_runs) | set(act_runs)):
        if label not in act_runs:
            diffs.append(f"{label}: expected this run, it is not in the recorded verdicts any more")
            continue
        if label not in exp_runs:
            diffs.append(f"{label}: a recorded run the expected figures do not cover")
            continue
        e, a = exp_runs[label], act_runs[label]
        _diff(e["items"], a["items"], f"{label} item", diffs, limit)
        _diff(e["summary"], a["summary"], f"{label} figure", diffs, limit)
    return diffs[:limit]
