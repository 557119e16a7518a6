"""The Editor's number rules on counts and on what a number is about (pure decisions, no model):
counts written in words, a count checked against the source's count of the same thing, a number
the source states only for another fact, and sentences about the post that are not claims."""
from __future__ import annotations

import time
from decimal import Decimal

import numpy as np
import pytest

from agents.editor import (
    _content_words,
    about_the_post,
    check_citations,
    check_rules,
    check_support,
    number_in_other_fact,
    support_texts,
    word_counts,
)
from agents.models import Citation, ResearchNotes

GQA = ("The weight shapes show it: q_proj is [4096, 4096] (32 query heads x 128 head dim) while k_proj and v_proj "
       "are [1024, 4096] (8 KV heads x 128). Four query heads share each KV head, a 4:1 ratio, so the KV cache is "
       "four times smaller than with MHA.")
LEDGER = ("Derive a deterministic publish key from the approved draft. In one database transaction, insert the key "
          "into a publications ledger with a UNIQUE constraint and mark the post as published.")
COST = ("A content-engine run has a researcher HyDE call (a few hundred tokens), one to four writer drafts and one "
        "judge call per draft. The revision cap (3) is also a cost cap.")
WRITERS = "CockroachDB was half as fast with one writer and sped up 1.67 times with four, while PostgreSQL slowed."
RANK = ("Format compliance or a persona is a low-dimensional change and r = 8 or 16 is enough. For this dataset "
        "r = 32 was the practical sweet spot: most of the gain before the adapter doubles again.")
MQA = ("Multi-query attention gives all query heads one shared key/value pair. The model was fine-tuned on 550 "
       "training pairs for 3 epochs.")


def _notes(*excerpts: str, grounded: bool = True) -> ResearchNotes:
    return ResearchNotes(notes="...", grounded=grounded, citations=[
        Citation(n=i, chunk_id=f"c{i}", source_title=f"note {i}", excerpt=x) for i, x in enumerate(excerpts, 1)])


def _check(sentence: str, *excerpts: str):
    (result,) = check_rules(sentence, _notes(*excerpts))
    return result.status, result.problems


def test_counts_in_words_are_read_as_numbers():
    got = [(c.written, c.value, c.thing) for c in word_counts(
        "Twenty-four layers, eight query heads, an eightfold cut, twice the speed and a dozen runs.")]
    assert got == [("Twenty-four", Decimal(24), ("layer",)), ("eight", Decimal(8), ("query", "head")),
                   ("eightfold", Decimal(8), ("cut",)), ("twice", Decimal(2), ()), ("a dozen", Decimal(12), ("run",))]
    # ordinals, plurals and other words that start like a count are not counts
    assert word_counts("The fourth run, tens of them, a seventh try, often, someone.") == []


def test_one_is_a_count_only_for_the_comparison_and_never_after_a_determiner():
    assert word_counts("One copy of the weights serves one request.") == []
    got = word_counts("One copy serves the preferred one and a new one; one request at a time.", with_one=True)
    assert [(c.written, c.thing) for c in got] == [("One", ("copy", "serve")), ("one", ("reques",))]


def test_a_count_in_words_must_be_in_the_cited_source():
    status, problems = _check("A run makes one to six writer drafts and one judge call per draft [1].", COST)
    assert status == "unsupported" and "six does not occur in [1]" in problems[0]
    assert _check("A run makes one to four writer drafts and one judge call per draft [1].", COST)[0] == "unchecked"
    # a count the source gives in digits, and a count in digits the source gives in words
    assert _check("The revision cap of three is a cost cap too [1].", COST)[0] == "unchecked"
    assert _check("Each KV head serves 4 query heads [1].", GQA)[0] == "unchecked"


def test_a_count_must_be_the_sources_count_of_the_same_thing():
    # 8 is in the source, but for KV heads: the source counts query heads as 32 and four
    status, problems = _check("Every KV head therefore serves eight query heads [1].", GQA)
    assert status == "unsupported" and problems[0].startswith('"eight" (query head...): [1] counts that as 4, 32')
    assert " 8," not in problems[0]  # the source's 8 counts KV heads
    assert _check("Every KV head therefore serves four query heads [1].", GQA)[0] == "unchecked"
    assert _check("The model keeps eight KV heads for its 32 query heads [1].", GQA)[0] == "unchecked"
    # the same thing with other modifiers: "separate transactions" is the ledger's "database transaction"
    status, problems = _check("Inserting the key into the ledger and marking the post published happen in two "
                              "separate transactions [1].", LEDGER)
    assert status == "unsupported" and '"two" (separa transa...): [1] counts that as 1' in problems
    assert _check("Inserting the key into the ledger and marking the post published happen in a single "
                  "transaction [1].", LEDGER)[0] == "unchecked"


def test_a_number_left_without_its_noun_counts_the_same_thing():
    # "... with one writer and sped up 1.67 times with four": four counts writers too
    assert _check("With four writers CockroachDB sped up 1.67 times [1].", WRITERS)[0] == "unchecked"
    assert _check("With three writers CockroachDB sped up 1.67 times [1].", WRITERS)[0] == "unsupported"


def test_counts_in_another_fact_of_the_source_are_not_compared():
    # "one shared pair" (MQA) and "550 training pairs" (fine-tuning) share a noun, not a fact
    assert _check("Multi-query attention gives every query head one shared pair [1].", MQA)[0] == "unchecked"


def test_a_count_that_counts_nothing_named_is_not_checked():
    # "all three" points back at the sentence's own list; "two sides of" is an idiom in prose
    assert _check("It depends on the prompt length, the output length and the concurrency, all three [1].",
                  COST + " It depends on the prompt length, the output length and the concurrency.")[0] == "unchecked"
    # counts in an uncited sentence are prose, not figures (digits still are)
    notes = _notes(COST)
    assert [c.status for c in check_rules("Training and serving are two sides of the same deployment.", notes)] == [
        "not_a_claim"]
    assert [c.status for c in check_rules("A run makes 4 writer drafts.", notes)] == ["unsupported"]


def test_a_number_the_source_states_only_for_another_fact():
    status, problems = _check("On this dataset the sweep found r = 16 to be the practical sweet spot [1].", RANK)
    assert status == "unsupported" and problems == ["16 occurs in [1] only in sentences about something else"]
    assert _check("On this dataset the sweep found r = 32 to be the practical sweet spot [1].", RANK)[0] == "unchecked"
    assert _check("For a persona, r = 16 is enough [1].", RANK)[0] == "unchecked"
    # too few terms to tell which fact a sentence states: not judged
    assert not number_in_other_fact({Decimal(16)}, _content_words("Use r = 16 here."), RANK)
    # a computed number is the derivation rule's
    assert _check("Doubling r = 16 gives r = 32 (derived) [1].", RANK)[0] == "unchecked"


@pytest.mark.parametrize("sentence", [
    "This post explains prefix caching and PagedAttention.",
    "This post covers two quiet changes in Llama: the tokenizer and the MLP.",
    "In this article we compare two vector stores.",
    "Let's look at what the numbers say.",
    "Here is what a LoRA adapter really costs, in parameters and in money.",
    "First, we will look at the cache.",
    "The rest of this post works through the arithmetic.",
])
def test_a_sentence_about_the_post_is_not_a_claim(sentence):
    assert about_the_post(sentence)
    (result,) = check_rules(sentence, _notes(GQA))
    assert (result.status, result.by) == ("not_a_claim", "rules")


@pytest.mark.parametrize("sentence", [
    "This post shows that grouped-query attention makes the cache four times smaller.",  # a finding
    "This model keeps its KV heads in one cache.",
    "Post-training changes what the model says.",
    "Here the cache shrinks.",
    "Here is what happens when the cache fills: the scheduler preempts a request.",
    "This part of the network stores the keys.",
    "We measured the cache at every batch size.",
])
def test_a_sentence_that_states_something_is_not_about_the_post(sentence):
    assert not about_the_post(sentence)


def test_a_sentence_about_the_post_with_a_number_is_still_checked():
    (result,) = check_rules("This post shows why 8 KV heads are enough.", _notes(GQA))
    assert result.status == "unsupported" and "without a citation" in result.problems[0]


async def test_a_sentence_about_the_post_is_neither_compared_nor_sent_to_the_judge():
    """However close it is to a note, the support check does not call it a restatement, and the claim
    call is not asked about it."""
    notes = _notes(GQA)
    body = "This post explains how four query heads share each KV head."
    vectors = {t: np.array([1.0, 0.0], dtype=np.float32) for t in support_texts(body, notes)}  # cosine 1 with the note
    results = check_support(check_rules(body, notes), notes, vectors)
    assert [(c.status, c.by) for c in results] == [("not_a_claim", "rules")]

    class NoJudge:
        async def complete_json(self, *a, **kw):
            raise AssertionError("the claim call was asked about a sentence about the post")

    report = await check_citations(NoJudge(), body=body, notes=notes, draft_version=1, thread_id=None, use_judge=True,
                                   max_tokens=100, support_vectors=vectors)
    assert report.passed and report.checked == 0


def test_the_count_rules_are_linear_on_hostile_text():
    hostile = ("eight " * 20000 + "one-" * 10000 + "twenty-" * 10000 + " 1" * 20000 + " [1].")
    source = "four heads " * 5000 + ". " + "Here is what 8 heads do. " * 2000
    t = time.perf_counter()
    check_rules(hostile, _notes(source))
    about_the_post("let's " * 20000)
    assert time.perf_counter() - t < 5.0
