"""The planted set split in two halves by topic, for choosing thresholds on one and reporting on the other.

Drafts that share a corpus note (d01 and d20 both cite grouped-query-attention) land in the same
half, so no note's wording is seen on both sides. The halves come from a seeded shuffle of those
groups (seed fixed here, chosen before any threshold was tried), filled to 12 drafts each.
"""
from __future__ import annotations

import random

SPLIT_SEED = 14  # the number; fixed before the support check was tuned


def topic_groups(pairs: dict[str, tuple[str, ...]]) -> list[list[str]]:
    """Drafts grouped so that two drafts sharing a note are in one group (connected components)."""
    parent = {d: d for d in pairs}

    def root(d: str) -> str:
        while parent[d] != d:
            parent[d] = parent[parent[d]]
            d = parent[d]
        return d

    by_note: dict[str, str] = {}
    for d, notes in sorted(pairs.items()):
        for note in notes:
            if note in by_note:
                parent[root(d)] = root(by_note[note])
            else:
                by_note[note] = d
    groups: dict[str, list[str]] = {}
    for d in sorted(pairs):
        groups.setdefault(root(d), []).append(d)
    return sorted(groups.values())


def split_halves(pairs: dict[str, tuple[str, ...]], *, seed: int = SPLIT_SEED) -> tuple[set[str], set[str]]:
    """(tuning half, reporting half) of the draft ids: whole topic groups, shuffled with `seed`, the
    first half filled up to half the drafts."""
    groups = topic_groups(pairs)
    random.Random(seed).shuffle(groups)
    target = len(pairs) // 2
    tune: set[str] = set()
    report: set[str] = set()
    for g in groups:
        (tune if len(tune) + len(g) <= target else report).update(g)
    return tune, report


def planted_halves(*, seed: int = SPLIT_SEED) -> tuple[set[str], set[str]]:
    from evals.faithfulness.drafts import DRAFTS

    return split_halves({d["draft"]: tuple(d["pair"]) for d in DRAFTS}, seed=seed)
