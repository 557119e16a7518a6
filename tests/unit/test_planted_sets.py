"""The committed planted-error sets are what make_planted builds from their drafts: planted.jsonl from
drafts.py (tuned on) and planted-heldout.jsonl from drafts_heldout.py (written apart from the rules,
for scoring them once); the held-out set's size (its shape: tests/integration/test_eval_faithfulness.py)."""
from __future__ import annotations

from collections import Counter

from evals.faithfulness import make_planted
from evals.faithfulness import run as faith


def test_planted_jsonl_is_what_the_builder_makes_from_drafts_py():
    assert faith.load_planted(make_planted.OUT) == make_planted.build()


def test_planted_heldout_jsonl_is_what_the_builder_makes_from_drafts_heldout_py():
    assert faith.load_planted(make_planted.OUT_HELDOUT) == make_planted.build_heldout()


def test_the_heldout_set_is_big_enough_and_apart_from_the_tuning_set():
    from evals.faithfulness.drafts import DRAFTS as TUNED
    from evals.faithfulness.drafts_heldout import DRAFTS as HELDOUT

    rows = faith.load_planted(make_planted.OUT_HELDOUT)
    kinds = Counter(r["kind"] for r in rows)
    assert kinds["clean"] >= 16 and sum(v for k, v in kinds.items() if k != "clean") >= 48
    assert not {d["draft"] for d in HELDOUT} & {d["draft"] for d in TUNED}
    # no pair of notes of the tuning set is reused
    assert not {frozenset(d["pair"]) for d in HELDOUT} & {frozenset(d["pair"]) for d in TUNED}
