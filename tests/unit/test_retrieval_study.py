"""The retrieval study's ranking variants and the tune harness's 2-fold choice (issue 14): pure functions."""
from __future__ import annotations

from evals.retrieval.study import QuerySignals, rank_notes, strip_request_frame
from evals.retrieval.tune import _two_fold_weight


def _sig(**kw) -> QuerySignals:
    base = dict(id="q", expected=["b"], query="q", dense=["a", "b", "c"], text=["a", "c", "b"],
                mean={"a": 0.5, "b": 0.4, "c": 0.3}, card={})
    base.update(kw)
    return QuerySignals(**base)


def test_the_hypothesis_text_arm_ranks_only_when_weighted():
    sig = _sig(hyp_text=["b", "c"])
    assert rank_notes(sig)[0] == "a"
    assert rank_notes(sig, w_hyp_text=0.0) == rank_notes(sig)
    assert rank_notes(sig, w_hyp_text=2.0)[0] == "b"


def test_best_n_ranks_a_note_by_its_best_chunks_not_all_of_them():
    # c has one strong chunk among weak ones (low mean of all), its best-2 mean is the highest
    sig = _sig(best_n={2: {"a": 0.4, "b": 0.3, "c": 0.7}})
    assert rank_notes(sig, best_n=2, w_best_n=1.0, w_mean=0.0, w_dense=0.0, w_text=0.0) == ["c", "a", "b"]
    assert rank_notes(sig, best_n=2, w_best_n=0.0) == rank_notes(sig)  # weight 0: the production ranking


def test_strip_request_frame_keeps_the_topic_and_leaves_headlines_alone():
    assert strip_request_frame("Write a post on adapter fine-tuning: two matrices") == "adapter fine-tuning: two matrices"
    assert strip_request_frame("Explain how a reward model learns") == "a reward model learns"
    assert strip_request_frame("A post about the approval rule") == "the approval rule"
    assert strip_request_frame("Write about HNSW") == "HNSW"
    for headline in ("Don't recompute the system prompt", "Does rank 64 buy you anything?", "Postgres or Chroma"):
        assert strip_request_frame(headline) == headline
    assert strip_request_frame("Write a post on ") == "Write a post on "  # nothing left: the text as typed


def test_two_fold_weight_scores_each_half_with_the_weight_chosen_on_the_other():
    def rows(top1s):
        return [{"top1": t, "rr": 1.0 if t else 0.5} for t in top1s]
    # w0 wins on the even queries, w1 on the odd ones: each half is scored with the other's choice
    per_query = {"plan@0": rows([1, 0, 1, 0]), "plan@1": rows([0, 1, 0, 1])}
    out = _two_fold_weight(per_query, ["plan@0", "plan@1"])
    assert out["chosen"] == ["plan@0", "plan@1"] and out["top1"] == 0.0 and out["mrr"] == 0.5
    same = {"plan@0": rows([1, 1, 0, 1]), "plan@1": rows([1, 1, 0, 1])}  # a tie: the first listed
    assert _two_fold_weight(same, ["plan@0", "plan@1"]) == {"top1": 0.75, "mrr": 0.875, "chosen": ["plan@0", "plan@0"]}
