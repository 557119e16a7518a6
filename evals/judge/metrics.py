"""Agreement statistics between a judge and the human labels. Pure functions, no I/O.

Definitions (the curriculum's Phase 11 table uses the same ones):
- Pearson r per dimension over the drafts with a valid verdict; None when either side is constant
  (a judge that gives every draft a 4 has no correlation to report, not a correlation of 0).
- overall r: Pearson r of the per-draft means of the four scores (the quantity the gate thresholds).
- MAE per dimension; overall MAE = the mean of the four (0.562 = (0.40+0.40+0.55+0.90)/4 in the seed).
- Cohen's kappa of two categorical labellings: (p_o - p_e) / (1 - p_e), None when p_e = 1.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    if len(xs) != len(ys):
        raise ValueError("pearson: sequences of different length")
    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return statistics.correlation([float(x) for x in xs], [float(y) for y in ys])


def mae(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    if len(xs) != len(ys):
        raise ValueError("mae: sequences of different length")
    if not xs:
        return None
    return sum(abs(float(x) - float(y)) for x, y in zip(xs, ys)) / len(xs)


def confusion(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """counts[true][predicted] over the given labels (a pair outside them is counted under its own names)."""
    table = {t: {p: 0 for p in labels} for t in labels}
    for t, p in zip(truth, predicted, strict=True):
        table.setdefault(t, {q: 0 for q in labels}).setdefault(p, 0)
        table[t][p] += 1
    return table


def accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float | None:
    if not truth:
        return None
    return sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)


def cohen_kappa(truth: Sequence[str], predicted: Sequence[str]) -> float | None:
    n = len(truth)
    if n == 0:
        return None
    p_o = accuracy(truth, predicted)
    ct, cp = Counter(truth), Counter(predicted)
    p_e = sum(ct[c] * cp[c] for c in set(ct) | set(cp)) / (n * n)
    if math.isclose(p_e, 1.0):
        return None
    return (p_o - p_e) / (1 - p_e)


def precision_recall(truth: Sequence[str], predicted: Sequence[str], positive: str) -> tuple[float | None, float | None]:
    tp = sum(t == positive and p == positive for t, p in zip(truth, predicted, strict=True))
    pred_pos = sum(p == positive for p in predicted)
    true_pos = sum(t == positive for t in truth)
    return (tp / pred_pos if pred_pos else None, tp / true_pos if true_pos else None)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
