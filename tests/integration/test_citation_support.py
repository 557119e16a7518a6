"""The Editor's support check through the real embedder (all-MiniLM-L6-v2 from its package): the
node's vectors, the check's verdicts on paraphrased sentences, the cache across revisions, the
eval's report of it, and the shipped thresholds against the method that chose them."""
from __future__ import annotations

from agents import editor
from agents.models import Citation, ResearchNotes
from evals.faithfulness import run as faith
from graphs.desks import support_vectors
from tests.retrieval_helpers import embedder  # noqa: F401 - the session's embedder fixture

GQA = ("Grouped-query attention lets several query heads share one key/value head. Llama 3.1 8B has 32 query "
       "heads and 8 KV heads, so four query heads share each KV head and the KV cache is four times smaller "
       "than with multi-head attention.")
ROPE = ("Rotary position embeddings rotate each pair of query and key dimensions by an angle that grows with the "
        "token's position. The dot product of a rotated query and key then depends only on their distance. "
        "RoPE adds no learned parameters.")
NOTES = ResearchNotes(notes="...", grounded=True, citations=[
    Citation(n=1, chunk_id="c1", source_title="Grouped-query attention", excerpt=GQA),
    Citation(n=2, chunk_id="c2", source_title="Rotary position embeddings", excerpt=ROPE)])

CLEAN = ("This post looks at two pieces of Llama's attention. "
         "Several query heads in Llama 3.1 8B read from the same key/value head, four of them per KV head [1]. "
         "That makes its KV cache a quarter of the size multi-head attention would need [1]. "
         "Position enters by rotating the query and key dimensions of every head through an angle that grows with the token's place [2].")
# The same draft with the RoPE sentence cited to the GQA note, and with a RoPE fact stated uncited.
WRONG_SOURCE = CLEAN.replace("token's place [2].", "token's place [1].")
UNCITED = CLEAN + " Once rotated, the dot product of a query and a key depends only on how far apart their tokens are."


async def _check(body: str, *, use_judge: bool = False, gateway=None):
    vectors = await support_vectors(body, NOTES)
    return await editor.check_citations(gateway, body=body, notes=NOTES, draft_version=1, thread_id=None,
                                        use_judge=use_judge, max_tokens=100, support_vectors=vectors)


async def test_paraphrased_errors_are_caught_and_the_note_is_named(embedder):  # noqa: F811
    clean = await _check(CLEAN)
    assert clean.passed and clean.checked_by == "rules+support", [c.problems for c in clean.failures]
    # the rules alone let both errors through: they are paraphrases that share terms with [1]
    for body in (WRONG_SOURCE, UNCITED):
        assert (await editor.check_citations(None, body=body, notes=NOTES, draft_version=1, thread_id=None,
                                             use_judge=False, max_tokens=100)).passed
    wrong = await _check(WRONG_SOURCE)
    (flag,) = wrong.failures
    assert flag.by == "support" and flag.sentence.startswith("Position enters by rotating")
    assert flag.problems[0].startswith("reads like source [2]") and "cite [2]" in flag.problems[0]
    uncited = await _check(UNCITED)
    (flag,) = uncited.failures
    assert flag.by == "support" and flag.sentence.startswith("Once rotated")
    assert flag.problems[0].startswith("restates source [2]") and flag.problems[0].endswith("cite [2]")
    # what the Writer revises from names the note to cite
    assert "cite [2]" in editor.citation_feedback(uncited)


async def test_the_notes_vectors_are_embedded_once_across_revisions(embedder):  # noqa: F811
    from tools.embeddings import clear_vector_cache

    clear_vector_cache()
    first = await support_vectors(CLEAN, NOTES)
    assert set(first) == set(editor.support_texts(CLEAN, NOTES)) and all(v.shape == (384,) for v in first.values())
    before = embedder.texts_embedded
    revised = await support_vectors(UNCITED, NOTES)  # one new sentence; the notes did not change
    assert embedder.texts_embedded - before == 1 and len(revised) == len(first) + 1


async def test_the_eval_prints_the_checks_flags_with_reasons_and_each_half(embedder):  # noqa: F811
    rows = [r for r in faith.load_planted() if r["draft"] in ("d19", "d09")]
    lines: list[str] = []
    out = await faith.run_planted(None, use_judge=False, max_tokens=100, rows=rows, echo=lines.append, support=True,
                                  halves=({"d19"}, {"d09"}))
    flags = [ln for ln in lines if ln.startswith("    d")]
    assert any(ln.startswith("    d19-wrong_source: \"Llama's SwiGLU MLP has three matrices") and "reads like source [2]"
               in ln for ln in flags), lines
    assert any(ln.startswith("    d19-uncited_claim:") and "restates source [2]" in ln for ln in flags), lines
    assert out["tuning"]["drafts"] == 4 and out["reported"]["drafts"] == 4 and out["drafts"] == 8
    assert any(ln.startswith("planted-error set, reported half (d09)") for ln in lines)
    cost = out["support_cost"]
    assert cost["embed_ms"]["mean"] > 0 and cost["texts_per_draft"] > 5 and cost["check_ms"]["mean"] > 0
    assert any(ln.startswith("  support check cost per draft") for ln in lines)


async def test_the_shipped_thresholds_are_what_the_tuning_half_gives(embedder):  # noqa: F811
    """agents/editor.py's thresholds are the method's output on the tuning data (tune_support.py), so a
    change to the features, the drafts or the split cannot leave them stale."""
    from evals.faithfulness import tune_support

    out = await tune_support.study(cross=False, echo=lambda *_: None)
    assert (out["restatement"], out["margin"]) == (editor.SUPPORT_MIN_RESTATEMENT, editor.SUPPORT_MIN_MARGIN)
    lo, hi = out["fold1"]["restatement_range"]
    assert lo < editor.SUPPORT_MIN_RESTATEMENT <= hi
    assert out["fold1"]["tuning"]["false_alarms"][0] == 0  # the rule: no false alarm on the tuning data
