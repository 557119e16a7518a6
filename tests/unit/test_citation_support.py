"""The Editor's support check as pure decisions: support scores from given vectors, the wrong-source
and uncited-claim verdicts at their thresholds, and check_support / check_citations over the
rules' results (hand-made unit vectors here; tests/integration/test_citation_support.py runs it
through the real embedder)."""
from __future__ import annotations

import numpy as np
import pytest

from agents import editor
from agents.editor import (
    SUPPORT_MIN_MARGIN,
    SUPPORT_MIN_RESTATEMENT,
    better_source,
    check_citations,
    check_rules,
    check_support,
    restated_source,
    support_passages,
    support_scores,
    support_texts,
)
from agents.models import Citation, ResearchNotes

GQA = "Grouped-query attention shares key heads between query heads. Llama keeps eight heads."
ROPE = "Rotary embeddings rotate queries and keys by position. They learn no parameters."


def _notes(*excerpts: str, grounded: bool = True) -> ResearchNotes:
    return ResearchNotes(notes="...", grounded=grounded, citations=[
        Citation(n=i, chunk_id=f"c{i}", source_title=f"note {i}", excerpt=x) for i, x in enumerate(excerpts, 1)])


NOTES = _notes(GQA, ROPE)


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def _vectors(body: str, notes: ResearchNotes, by_text: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every text the check needs: the ones named get their vector, the rest an unrelated one."""
    other = _unit(0, 0, 0, 1)
    return {t: by_text.get(t, other) for t in support_texts(body, notes)}


# The axes: 0 = "about GQA", 1 = "about RoPE", 2 = "about this post".
GQA_V, ROPE_V, META_V = _unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1)
NOTE_VECTORS = {"Grouped-query attention shares key heads between query heads.": GQA_V,
                "Llama keeps eight heads.": GQA_V,
                "Rotary embeddings rotate queries and keys by position.": ROPE_V,
                "They learn no parameters.": ROPE_V}


def test_support_texts_are_the_sentences_and_the_notes_sentences_once_each():
    body = "Rotary embeddings rotate queries and keys by position [1]. Rotary embeddings rotate queries and keys by position."
    texts = support_texts(body, NOTES)
    assert texts[0] == "Rotary embeddings rotate queries and keys by position ."  # the marker removed
    assert len(texts) == len(set(texts))
    assert "They learn no parameters." in texts and support_passages(NOTES)[1] == [
        "Grouped-query attention shares key heads between query heads.", "Llama keeps eight heads."]


def test_support_is_the_mean_of_the_best_cosine_and_the_shared_words():
    sentence = "Rotary embeddings rotate queries by position."
    vectors = _vectors(sentence, NOTES, {**NOTE_VECTORS, sentence: ROPE_V})
    scores = support_scores(sentence, NOTES, vectors)
    # note 2: cosine 1 and every content word (rotary, embeddings, rotate, queries, position) in it
    assert scores[2] == 1.0
    # note 1: cosine 0; of the 5 words it has "queries" only as "query" (prefix 'querie' is not 'query')
    assert scores[1] == 0.0
    words_only = "Rotary embeddings explained."
    vectors[words_only] = GQA_V  # cosine 1 with note 1, 0 with note 2; 2 of its 3 words are in note 2
    assert support_scores(words_only, NOTES, vectors) == {1: 0.5, 2: pytest.approx(1 / 3, abs=1e-4)}


@pytest.mark.parametrize("margin, expected", [
    (SUPPORT_MIN_MARGIN, (2, 0.3 + SUPPORT_MIN_MARGIN, 0.3)),  # at the margin: flagged
    (SUPPORT_MIN_MARGIN - 0.01, None),  # just under: not
    (-0.5, None),  # the cited note is the better one
])
def test_a_better_note_by_the_margin_is_a_wrong_source(margin, expected):
    scores = {1: 0.3, 2: round(0.3 + margin, 4)}
    assert better_source(scores, (1,)) == expected


def test_wrong_source_needs_a_cited_note_and_another_one():
    assert better_source({1: 0.2, 2: 0.9}, (1, 2)) is None  # cites both: nothing else to prefer
    assert better_source({1: 0.2}, (3,)) is None  # cites a note that is not there (the rules say so)
    assert better_source({1: 0.1, 2: 0.9, 3: 0.5}, (1,)) == (2, 0.9, 0.1)  # the best other note is named


@pytest.mark.parametrize("best, flagged", [(SUPPORT_MIN_RESTATEMENT, True), (SUPPORT_MIN_RESTATEMENT - 0.01, False)])
def test_an_uncited_restatement_at_the_threshold_is_a_claim(best, flagged):
    assert restated_source({1: 0.1, 2: best}) == ((2, best) if flagged else None)
    assert restated_source({}) is None


BODY = ("This post is about attention [1]. "  # cited to GQA, reads like the post itself (no better note)
        "Rotary embeddings rotate query heads by position [1]. "  # cited to [1] (shares 2 of 6 terms), says what [2] says
        "They learn no parameters. "  # uncited, restates [2]
        "Here comes the rest.")  # uncited, about the post: no note supports it


def _body_vectors(body=BODY, notes=NOTES):
    return _vectors(body, notes, {**NOTE_VECTORS, "This post is about attention .": _unit(0.3, 0, 1),
                                  "Rotary embeddings rotate query heads by position .": ROPE_V,
                                  "They learn no parameters.": ROPE_V, "Here comes the rest.": META_V})


def test_check_support_flags_the_wrong_source_and_the_uncited_claim_naming_the_note():
    results = check_support(check_rules(BODY, NOTES), NOTES, _body_vectors())
    got = [(c.status, c.by, c.problems) for c in results]
    assert got[0][:2] == ("unchecked", "rules")
    assert got[1][0] == "unsupported" and got[1][1] == "support"
    # note 2: cosine 1, 4 of the 6 content words; note 1: cosine 0, 2 of 6 ("query", "heads")
    assert got[1][2] == ["reads like source [2] (support 0.83), not [1] (0.17): cite [2], or check that [1] says it"]
    assert got[2][:2] == ("unsupported", "support") and got[2][2] == [
        "restates source [2] (support 1.00) without citing it: cite [2]"]
    assert got[3] == ("not_a_claim", "none", [])


def test_check_support_leaves_rule_flags_kept_sentences_and_ungrounded_notes_alone():
    rule_flagged = "Rotary embeddings rotate queries by 7 positions [1]."  # 7 is not in [1]: the rules' verdict stands
    before = check_rules(rule_flagged, NOTES)
    vectors = _vectors(rule_flagged, NOTES, {**NOTE_VECTORS, "Rotary embeddings rotate queries by 7 positions .": ROPE_V})
    after = check_support(before, NOTES, vectors)
    assert after == before and after[0].by == "rules"
    kept = check_rules(BODY, NOTES, kept={"They learn no parameters.": editor.ClaimResult(
        sentence="They learn no parameters. [2]", cites=[2], status="supported", by="judge")})
    assert check_support(kept, NOTES, _body_vectors())[2].by == "kept"
    ungrounded = _notes(GQA, ROPE, grounded=False)
    results = check_support(check_rules(BODY, ungrounded), ungrounded, _body_vectors(notes=ungrounded))
    assert [c.by for c in results][2:] == ["none", "none"]  # nothing to cite: an uncited sentence stays
    too_short = "Heads."  # one content word: not compared
    assert check_support(check_rules(too_short, NOTES), NOTES, _vectors(too_short, NOTES, {"Heads.": GQA_V}))[0].by == "none"


async def test_check_citations_runs_it_before_the_claim_call_and_says_so():
    """A draft the support check sends back never reaches the claim call (the gateway would raise)."""
    class NoJudge:
        async def complete_json(self, *a, **kw):
            raise AssertionError("the claim call was made for a draft the support check failed")

    report = await check_citations(NoJudge(), body=BODY, notes=NOTES, draft_version=1, thread_id=None, use_judge=True,
                                   max_tokens=100, support_vectors=_body_vectors())
    assert not report.passed and report.checked_by == "rules+support"
    assert [c.sentence for c in report.failures] == [
        "Rotary embeddings rotate query heads by position [1].", "They learn no parameters."]
    without = await check_citations(None, body=BODY, notes=NOTES, draft_version=1, thread_id=None, use_judge=False,
                                    max_tokens=100)
    assert without.passed and without.checked_by == "rules"  # the rules alone pass this draft


def test_a_note_with_an_empty_excerpt_supports_nothing():
    notes = _notes(GQA, "")
    body = "They learn no parameters."
    vectors = _vectors(body, notes, {**NOTE_VECTORS, body: ROPE_V})
    assert "" not in vectors and set(support_scores(body, notes, vectors)) == {1}
    assert [c.by for c in check_support(check_rules(body, notes), notes, vectors)] == ["none"]
