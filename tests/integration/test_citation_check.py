"""The Editor's citation check: the deterministic rules, and the batched claim-support call over a
scripted judge (real HTTP)."""
from __future__ import annotations

import json

import pytest

from agents import editor
from agents.editor import ClaimVerdicts, apply_claim_verdicts, check_rules, quote_in_source, split_sentences
from agents.models import Citation, ResearchNotes
from tests.engine_fixtures import JUDGE

GQA = ("Llama 3.1 8B has 32 query heads and 8 KV heads of dimension 128, so four query heads share each "
       "KV head and the KV cache is four times smaller than with MHA. At 128K context and batch 10 that is "
       "172 GB instead of 687 GB.")
KV = ("The KV cache stores, per token, 2 x layers x kv_heads x head_dim values. For Llama 3.1 8B in bf16 that "
      "is 2 x 32 x 8 x 128 x 2 bytes = 131,072 bytes, 128 KiB per token.")
ROPE = "RoPE rotates query and key vectors by a position-dependent angle and adds no learned parameters."


def _notes(*excerpts: str, grounded: bool = True) -> ResearchNotes:
    return ResearchNotes(notes="...", grounded=grounded, citations=[
        Citation(n=i, chunk_id=f"c{i}", source_title=f"note {i}", excerpt=x) for i, x in enumerate(excerpts, 1)])


NOTES = _notes(GQA, KV, ROPE)


def _statuses(body: str, notes=NOTES):
    return [(c.status, c.problems) for c in check_rules(body, notes)]


def test_sentences_and_their_markers():
    got = split_sentences("# Title\n\nGQA shares KV heads. [1] It saves memory [1, 2].\n\n- RoPE adds nothing [3].\n"
                          "```\ncode 123\n```\nThat is all.")
    assert [(s.plain, s.cites) for s in got] == [
        ("GQA shares KV heads.", (1,)), ("It saves memory .", (1, 2)), ("RoPE adds nothing .", (3,)),
        ("That is all.", ())]


def test_correct_numbers_pass_in_any_written_form():
    body = ("Llama 3.1 8B pairs 32 query heads with 8 KV heads [1]. Each token costs 131072 bytes of cache, "
            "128 KiB [2]. At 128K context the cache shrinks from 687 GB to 172 GB [1].")
    assert [s for s, _ in _statuses(body)] == ["unchecked", "unchecked", "unchecked"]


def test_a_wrong_number_is_caught():
    (status, problems), = _statuses("The KV cache of Llama 3.1 8B needs 524,288 bytes per token [2].")
    assert status == "unsupported" and "524,288 does not occur in [2]" in problems[0]


def test_derived_numbers_must_follow_from_the_source():
    ok = _statuses("So 4 query heads share each KV head, 32 / 8 = 4 (derived) [1].")
    assert ok[0][0] == "unchecked"
    ok2 = _statuses("Batch 10 at 128K needs 515 GB less (derived) [1].")  # 687 - 172
    assert ok2[0][0] == "unchecked"
    bad = _statuses("That is 9,999 GB saved (derived) [1].")
    assert bad[0][0] == "unsupported" and "9,999" in bad[0][1][0]


def test_unknown_marker_and_uncited_number():
    (s1, p1), (s2, p2), (s3, _) = _statuses("GQA shares key/value heads [7]. It uses 8 KV heads. It saves memory.")
    assert s1 == "unsupported" and "[7], which is not in the research notes" in p1[0]
    assert s2 == "unsupported" and "without a citation" in p2[0]
    assert s3 == "not_a_claim"


def test_ungrounded_numbers_are_flagged_not_failed():
    (status, problems), = _statuses("It uses 8 KV heads.", _notes(grounded=False))
    assert status == "unverifiable" and "ungrounded" in problems[0]


def test_a_citation_to_an_unrelated_source_is_caught():
    (status, problems), = _statuses("Grouped-query attention shares key and value heads across query groups [3].")
    assert status == "unsupported" and "wrong source?" in problems[0]


def test_kept_sentences_reuse_their_result():
    body = "RoPE adds no learned parameters [3]."
    first = check_rules(body, NOTES)[0].model_copy(update={"status": "supported", "by": "judge", "quote": "adds no"})
    again = check_rules(body, NOTES, kept={"RoPE adds no learned parameters .": first})
    assert again[0].status == "supported" and again[0].by == "kept"


def test_quotes_must_be_in_the_source():
    assert quote_in_source("adds no learned parameters", ROPE)
    assert quote_in_source("RoPE  rotates query and key vectors, by a position-dependent angle", ROPE)
    assert not quote_in_source("learned position table of 1024 entries", ROPE)
    claims = check_rules("RoPE rotates query and key vectors [3]. RoPE has no parameters [3].", NOTES)
    verdicts = ClaimVerdicts.model_validate({"claims": [
        {"id": 1, "verdict": "supported", "quote": "rotates query and key vectors"},
        {"id": 2, "verdict": "supported", "quote": "an invented quote"}]})
    got = apply_claim_verdicts(claims, verdicts, NOTES)
    assert [c.status for c in got] == ["supported", "unsupported"]
    assert "not in the cited source" in got[1].problems[-1]
    with pytest.raises(ValueError, match="expected 1..2"):
        apply_claim_verdicts(claims, ClaimVerdicts.model_validate(
            {"claims": [{"id": 1, "verdict": "supported", "quote": ""}]}), NOTES)


def test_linear_time_on_hostile_text():
    import time

    hostile = "[" + "1," * 5000 + "1" + "." * 20000 + "9" * 20000 + " a" * 20000
    t = time.perf_counter()
    check_rules(hostile, NOTES)
    assert time.perf_counter() - t < 2.0


async def test_one_batched_claim_call_on_the_judge_route(db, llm):
    """Every cited claim the rules passed goes to the judge in ONE structured request; supported
    needs a quote that is in the source, and the support rate counts the cited claims."""
    def judge(req):
        assert req.schema and "claims" in json.dumps(req.schema)
        return {"claims": [{"id": 1, "verdict": "supported", "quote": "32 query heads and 8 KV heads"},
                           {"id": 2, "verdict": "unsupported", "quote": ""},
                           {"id": 3, "verdict": "not_a_claim", "quote": ""}]}

    llm.on_chat(judge, model=JUDGE)
    from tools.llm import get_gateway

    body = ("Llama 3.1 8B has 32 query heads and 8 KV heads [1]. RoPE was invented in 1999 by the Romans [3]. "
            "Read on to see why rotation matters [3].")
    report = await editor.check_citations(get_gateway(), body=body, notes=NOTES, draft_version=1, thread_id=None,
                                          use_judge=True, max_tokens=200)
    # 1999 is not in [3]: the rules caught it, so the draft goes back without asking the judge at all
    assert llm.requests_for(JUDGE) == [] and report.passed is False and report.checked_by == "rules"
    body = ("Llama 3.1 8B has 32 query heads and 8 KV heads [1]. RoPE adds parameters to every layer [3]. "
            "Read on to see why rotating vectors matters [3].")
    report = await editor.check_citations(get_gateway(), body=body, notes=NOTES, draft_version=1, thread_id=None,
                                          use_judge=True, max_tokens=200)
    assert len(llm.requests_for(JUDGE)) == 1
    prompt = llm.requests_for(JUDGE)[0].prompt
    assert "1. Llama 3.1 8B has 32 query heads" in prompt and "RoPE rotates" in prompt  # the cited sources, quoted
    assert [c.status for c in report.claims] == ["supported", "unsupported", "not_a_claim"]
    assert report.passed is False and report.support_rate == 0.5 and report.checked_by == f"rules+{JUDGE}"
    assert "does not support it" in editor.citation_feedback(report)
    assert "Keep these sentences" in editor.citation_feedback(report)


async def test_a_broken_claim_judge_never_passes_silently_nor_crashes(db, llm):
    llm.on_chat(lambda req: {"claims": [{"id": 9, "verdict": "supported", "quote": "x"}]}, model=JUDGE)
    from tools.llm import get_gateway

    report = await editor.check_citations(get_gateway(), body="RoPE adds no learned parameters [3].", notes=NOTES,
                                          draft_version=1, thread_id=None, use_judge=True, max_tokens=200)
    assert len(llm.requests_for(JUDGE)) == 2  # retried once
    assert report.error and "expected 1..1" in report.error and report.checked_by == "rules"
    assert report.claims[0].status == "unchecked"  # the rules' verdict stands, marked as not judged


def test_an_uncited_sentence_copied_from_a_source_is_caught():
    (status, problems), (s2, _) = _statuses(
        "RoPE rotates query and key vectors by a position-dependent angle and adds no learned parameters. "
        "This post looks at position encodings.")
    assert status == "unsupported" and problems == ["repeats source [3] without citing it"]
    assert s2 == "not_a_claim"


def test_numbers_that_name_a_thing_in_the_sources_are_not_claims():
    # "Llama 3.1 8B", "GPT-2" name what the sentence is about; the sources name them too.
    notes = _notes(GQA, "GPT-2 uses learned absolute position embeddings.")
    assert _statuses("This post is about Llama 3.1 8B and GPT-2.", notes) == [("not_a_claim", [])]
    # a name the sources do not give is still a number stated without a citation
    (status, problems), = _statuses("This post is about Llama 3.1 70B.", notes)
    assert status == "unsupported" and "70B" in problems[0]
    # the name is skipped, the claim next to it is not
    (status, problems), = _statuses("In Llama 3.1 8B the cache is 9 GB per token [1].", notes)
    assert status == "unsupported" and problems == ["9 does not occur in [1] (mark a computed number '(derived)')"]


def test_a_citation_carries_its_note_title_and_heading():
    notes = ResearchNotes(notes="...", grounded=True, citations=[
        Citation(n=1, chunk_id="c1", source_title="Llama 3.1 8B in numbers", heading="Attention",
                 excerpt="32 query heads share 8 KV heads.")])
    assert _statuses("The 8B model shares 8 KV heads among 32 query heads [1].", notes)[0][0] == "unchecked"


def test_a_sentence_may_start_lowercase_but_not_after_an_abbreviation():
    got = split_sentences("A filter can return fewer rows. pgvector 0.8 added iterative scans [1]. "
                          "Grouped heads, e.g. eight of them, vs. MHA's 32 [1]. vLLM pages the cache.")
    assert [(s.plain, s.cites) for s in got] == [
        ("A filter can return fewer rows.", ()), ("pgvector 0.8 added iterative scans .", (1,)),
        ("Grouped heads, e.g. eight of them, vs. MHA's 32 .", (1,)), ("vLLM pages the cache.", ())]
