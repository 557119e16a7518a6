"""The Writer's structured first draft (writer.draft@6, NEWSROOM_DRAFT_FORMAT=cited_json): each sentence
names its note after its text, code renders exactly that number as its [n]; a reply cut at max tokens keeps its
complete sentences; a reply with none falls back to a free-text draft. Through the real gateway and
a scripted OpenAI-compatible server over HTTP (the llama.cpp route's json_object + schema)."""
from __future__ import annotations

import json
import time

import pytest

from agents import writer
from agents.editor import check_rules, split_sentences
from agents.models import Citation, DraftOutline, DraftSection, DraftSentence, ResearchNotes, StructuredDraft
from config.settings import load_settings
from tests.scripted_llm import Reply, ScriptedLLM
from tools.llm import LLMGateway

NOTES = ResearchNotes(
    notes='[1] <source title="GQA">Llama 3 8B has 32 query heads and 8 KV heads.</source>\n\n'
          '[2] <source title="KV cache">The KV cache of Llama 3 8B takes 131,072 bytes per token in fp16.</source>',
    grounded=True,
    citations=[Citation(n=1, chunk_id="c1", source_title="GQA", excerpt="Llama 3 8B has 32 query heads and 8 KV heads."),
               Citation(n=2, chunk_id="c2", source_title="KV cache",
                        excerpt="The KV cache of Llama 3 8B takes 131,072 bytes per token in fp16.")])
OUTLINE = DraftOutline(version=1, title="GQA shrinks the cache", sections=["Heads [1]", "Bytes [2]"])
GOOD = {"title": "How GQA shrinks the KV cache", "sections": [
    {"heading": "Fewer heads", "sentences": [
        {"note": 1, "text": "Llama 3 8B has 32 query heads and 8 KV heads."},
        {"note": 0, "text": "What does that buy?"}]},
    {"heading": "The bytes", "sentences": [
        {"note": 2, "text": "The KV cache of Llama 3 8B takes 131,072 bytes per token in fp16."}]}]}


def sentence(note: int, text: str) -> DraftSentence:
    return DraftSentence(note=note, text=text)


# --- rendering: the marker is the note the model named, nothing else -------------------------------

def test_render_puts_each_named_note_before_the_full_stop():
    title, body, dropped = writer.render_structured(StructuredDraft.model_validate(GOOD), NOTES)
    assert title == "How GQA shrinks the KV cache" and dropped == []
    assert body == ("## Fewer heads\n\nLlama 3 8B has 32 query heads and 8 KV heads [1]. What does that buy?\n\n"
                    "## The bytes\n\nThe KV cache of Llama 3 8B takes 131,072 bytes per token in fp16 [2].")
    # The Editor reads the markers where the renderer put them: both facts cited, the question no claim.
    cites = [s.cites for s in split_sentences(body)]
    assert cites == [(1,), (), (2,)]
    assert not [c for c in check_rules(body, NOTES) if c.status == "unsupported"]


def test_a_note_not_in_the_notes_gives_no_marker_and_is_reported():
    text, unknown = writer.render_sentence(sentence(7, "GQA cuts the cache 4x."), {1, 2})
    assert (text, unknown) == ("GQA cuts the cache 4x.", 7)
    # ... and the Editor then sees an uncited number (the rule it always applied)
    problems = [c.problems for c in check_rules(text, NOTES) if c.status == "unsupported"]
    assert problems and "without a citation" in problems[0][0]


def test_markers_typed_into_the_text_are_replaced_by_the_named_note():
    text, unknown = writer.render_sentence(sentence(1, "Llama 3 8B has 8 KV heads [2]."), {1, 2})
    assert (text, unknown) == ("Llama 3 8B has 8 KV heads [1].", None)
    text, _ = writer.render_sentence(sentence(0, "A transition [1]."), {1, 2})
    assert text == "A transition."  # note 0: uncited, whatever the text typed


def test_two_sentences_in_one_text_both_carry_its_note():
    text, _ = writer.render_sentence(sentence(2, "It takes 131,072 bytes per token. That is in fp16"), {1, 2})
    assert text == "It takes 131,072 bytes per token [2]. That is in fp16 [2]"
    assert [s.cites for s in split_sentences(text)] == [(2,), (2,)]


def test_a_section_left_empty_and_heading_hashes_are_dropped():
    draft = StructuredDraft(title="# T itle", sections=[
        DraftSection(heading="## Empty", sentences=[sentence(1, "[1]")]),
        DraftSection(heading="Kept", sentences=[sentence(1, "Llama 3 8B has 8 KV heads.")])])
    title, body, _ = writer.render_structured(draft, NOTES)
    assert title == "T itle" and body == "## Kept\n\nLlama 3 8B has 8 KV heads [1]."


# --- salvage: a reply cut at max tokens -------------------------------------------------------------

def test_salvage_keeps_complete_sentences_only_and_guesses_no_note():
    raw = json.dumps(GOOD)
    cut = raw[:raw.index("131,072") + 3]  # inside the last sentence's text
    salvaged = writer.salvage_structured(cut)
    assert salvaged is not None and salvaged.title == GOOD["title"]
    assert [[(s.note, s.text) for s in sec.sentences] for sec in salvaged.sections] == [
        [(1, "Llama 3 8B has 32 query heads and 8 KV heads."), (0, "What does that buy?")]]


def test_salvage_pairs_note_and_text_only_inside_one_object():
    # text before note (another provider's key order) is read; a note with no text next to it is not
    # carried over to the next object's text.
    raw = ('{"title": "Tt", "sections": [{"heading": "H", "sentences": [{"text": "A \\"quoted\\" fact.", "note": 2}, '
           '{"note": 1, "tex')
    salvaged = writer.salvage_structured(raw)
    assert [(s.note, s.text) for s in salvaged.sections[0].sentences] == [(2, 'A "quoted" fact.')]
    assert writer.salvage_structured('{"title": "Tt", "sections": [{"heading": "H", "sentences": [{"note": 1, ') is None
    assert writer.salvage_structured("") is None and writer.salvage_structured("not json at all") is None


def test_salvage_reads_the_text_first_order_of_the_schema():
    raw = json.dumps({"title": "Tt", "sections": [{"heading": "H", "sentences": [
        {"text": "Llama 3 8B has 8 KV heads.", "note": 1}, {"text": "It takes 131,072 bytes", "note": 2}]}]})
    cut = raw[:raw.rindex('"note"') + 8]  # the last sentence's note not yet written
    salvaged = writer.salvage_structured(cut)
    assert [(s.note, s.text) for s in salvaged.sections[0].sentences] == [(1, "Llama 3 8B has 8 KV heads.")]


def test_the_draft_prompts_example_is_in_the_schemas_order_and_uses_two_notes_in_a_section():
    from agents.prompts import load_prompt

    tpl = load_prompt(writer.CITED_DRAFT_PROMPT)
    example = tpl.system[tpl.system.index("Answer:\n") + len("Answer:\n"):].replace("{{", "{").replace("}}", "}")
    parsed = StructuredDraft.model_validate_json(example)
    assert all(list(s.model_dump()) == ["text", "note"] for sec in parsed.sections for s in sec.sentences)
    assert example.index('"text"') < example.index('"note"')
    assert any(len({s.note for s in sec.sentences} - {0}) == 2 for sec in parsed.sections)


def test_salvage_is_linear_on_hostile_replies():
    for raw in ('{"note": 1, "text": "' + "a" * 200_000, '"heading": "' + '\\"' * 100_000,
                '{"note": 1, ' * 20_000, '"title"' + " " * 200_000):
        t = time.perf_counter()
        writer.salvage_structured(raw)
        assert time.perf_counter() - t < 1.0


# --- through the gateway: the request, the rendered draft, the fallbacks -------------------------------

@pytest.fixture(scope="module")
def llm():
    with ScriptedLLM(models=["local-writer"]) as srv:
        yield srv


@pytest.fixture
def gateway(llm):
    llm.reset()
    routes = {"writer": [{"provider": "llamacpp", "base_url": llm.base_url, "model": "local-writer"}]}
    return LLMGateway(load_settings(routes_json=json.dumps(routes), llm_retry_initial_s=0.01, llm_timeout_s=5.0),
                      recorder=None)


async def draft_of(gateway, **kw):
    sent: list[dict] = []
    kw.setdefault("draft_format", "cited_json")
    draft = await writer.write_draft(gateway, topic="GQA", notes=NOTES, previous=None, feedback=None, reason="first",
                                     thread_id=None, max_tokens=600, outline=OUTLINE, sent_messages=sent, **kw)
    return draft, sent


async def test_cited_json_asks_for_the_schema_with_the_notes_as_data(gateway, llm):
    llm.script(Reply.json(GOOD))
    draft, sent = await draft_of(gateway)
    (req,) = llm.requests
    assert req.response_format["type"] == "json_object"  # llama.cpp: json_object + schema = a grammar
    assert set(req.schema["properties"]) == {"title", "sections"}
    # The sentence's text comes before its note in the schema (the grammar's order on llama.cpp), so
    # the model names the note after writing the sentence.
    sentence_schema = req.schema["$defs"]["DraftSentence"]
    assert list(sentence_schema["properties"]) == ["text", "note"] and sentence_schema["required"] == ["text", "note"]
    data = [m["content"] for m in req.messages[1:-1]]
    assert any(d.startswith("<<<DATA-") and " notes>>>" in d.splitlines()[0] and "131,072" in d for d in data)
    assert "131,072" not in req.messages[0]["content"] + req.messages[-1]["content"]  # notes only inside data
    assert sent == [{"role": m["role"], "content": m["content"]} for m in req.messages]
    assert draft.prompt == writer.CITED_DRAFT_PROMPT and draft.version == 1 and draft.reason == "first"
    assert draft.title == GOOD["title"] and draft.body.count("[") == 2 and draft.model == "local-writer"


async def test_a_reply_cut_at_max_tokens_keeps_its_complete_sentences(gateway, llm):
    raw = json.dumps(GOOD)
    llm.script(Reply(text=raw[:raw.index("131,072")], finish_reason="length"))
    draft, _ = await draft_of(gateway)
    assert len(llm.requests) == 1
    assert draft.prompt == writer.CITED_DRAFT_PROMPT
    assert draft.body == "## Fewer heads\n\nLlama 3 8B has 32 query heads and 8 KV heads [1]. What does that buy?"


async def test_a_reply_with_no_sentence_falls_back_to_a_free_text_draft(gateway, llm):
    llm.script(Reply(text='{"title": "Only a ti', finish_reason="length"), "# Free text\n\nLlama 3 8B has 8 KV heads [1].")
    draft, sent = await draft_of(gateway)
    first, second = llm.requests
    assert first.wants_json and not second.wants_json
    assert draft.prompt == writer.DRAFT_PROMPT and draft.title == "Free text"
    assert sent == [{"role": m["role"], "content": m["content"]} for m in second.messages]


async def test_a_cited_json_revision_is_structured_and_counts_the_kept_sentences(gateway, llm):
    kept = "Llama 3 8B has 32 query heads and 8 KV heads [1]."
    llm.script(Reply.json(GOOD))
    previous = writer.Draft(version=1, title="T", body=kept + " Wrong 9 [2].", prompt=writer.CITED_DRAFT_PROMPT, model="m")
    draft = await writer.write_draft(gateway, topic="GQA", notes=NOTES, previous=previous, feedback="fix the 9",
                                     reason="citation_feedback", thread_id=None, max_tokens=300,
                                     draft_format="cited_json", passed_sentences=[kept])
    (req,) = llm.requests
    assert req.wants_json and "fix the 9" in req.prompt
    assert draft.prompt == writer.CITED_REVISE_PROMPT and draft.version == 2 and draft.reason == "citation_feedback"
    assert draft.kept_claims == 1 and kept in draft.body


async def test_text_format_revisions_stay_free_text(gateway, llm):
    llm.script("# Revised\n\nLlama 3 8B has 8 KV heads [1].")
    previous = writer.Draft(version=1, title="T", body="b", prompt=writer.DRAFT_PROMPT, model="m")
    draft = await writer.write_draft(gateway, topic="GQA", notes=NOTES, previous=previous, feedback="fix it",
                                     reason="citation_feedback", thread_id=None, max_tokens=300)
    assert not llm.requests[0].wants_json and draft.prompt == writer.REVISE_PROMPT and draft.version == 2


# --- the default: structured on the local Qwen, free text elsewhere ------------------------------------

def test_draft_format_defaults_to_cited_json_on_the_local_qwen_only():
    assert load_settings(local_model="qwen2.5-coder-1.5b", llm_provider="llamacpp").draft_format == "cited_json"
    assert load_settings(local_model="smollm2", llm_provider="llamacpp").draft_format == "text"
    assert load_settings(local_model="qwen2.5-coder-1.5b", llm_provider="vllm").draft_format == "text"
    assert load_settings(local_model="qwen2.5-coder-1.5b", draft_format="text").draft_format == "text"


def test_plan_and_outline_caps_fit_qwen_and_stay_for_smollm2():
    qwen = load_settings(local_model="qwen2.5-coder-1.5b", llm_provider="llamacpp")
    assert (qwen.plan_max_tokens, qwen.outline_max_tokens) == (240, 200)
    small = load_settings(local_model="smollm2", llm_provider="llamacpp")
    assert (small.plan_max_tokens, small.outline_max_tokens) == (160, 120)
    assert load_settings(local_model="qwen2.5-coder-1.5b", plan_max_tokens=100).plan_max_tokens == 100


def test_the_outline_comes_from_the_plan_on_qwen_only():
    assert load_settings(local_model="qwen2.5-coder-1.5b", llm_provider="llamacpp").outline_source == "plan"
    assert load_settings(local_model="smollm2", llm_provider="llamacpp").outline_source == "llm"
    assert load_settings(local_model="qwen2.5-coder-1.5b", outline_source="llm").outline_source == "llm"
    # ... and no claim call on the local Qwen (measured useless there), unless asked for
    assert load_settings(local_model="qwen2.5-coder-1.5b", llm_provider="llamacpp").claim_check is False
    assert load_settings(local_model="smollm2", llm_provider="llamacpp").claim_check is True
    assert load_settings(local_model="qwen2.5-coder-1.5b", claim_check=True).claim_check is True
    assert load_settings(local_model="qwen2.5-coder-1.5b", llm_provider="llamacpp").rubric_judge is False
    assert load_settings(local_model="smollm2", llm_provider="llamacpp").rubric_judge is True


def test_an_outline_from_the_plan_is_its_questions_and_needs_two():
    outline = writer.outline_from_plan("  How GQA\nshrinks it ", ["What is GQA?", " What is GQA? ", "How big?", ""],
                                       version=1)
    assert (outline.title, outline.sections, outline.source) == ("How GQA shrinks it", ["What is GQA?", "How big?"], "plan")
    assert "1. What is GQA?\n2. How big?" in writer.outline_text(outline)
    assert writer.outline_from_plan("T", ["Only one?"], version=1) is None  # the outline call is made instead
    assert len(writer.outline_from_plan("T", [f"Q{i}?" for i in range(9)], version=1).sections) == 6


def test_the_bench_counts_cited_sentences_and_rule_flags():
    from evals.bench.cited_drafts import draft_counts

    body = ("Llama 3 8B has 32 query heads and 8 KV heads [1]. It takes 131,072 bytes per token in fp16 [2]. "
            "It has 64 heads [1]. That costs 9 bytes.")
    counts = draft_counts(body, NOTES)
    assert {k: counts[k] for k in ("words", "sentences", "cited", "flags", "passed_rules")} == {
        "words": 30, "sentences": 4, "cited": 3, "flags": 2, "passed_rules": False}


# --- cited_sections: one call per outline section, from the notes its line names ------------------------

def test_an_outline_line_picks_its_notes_and_none_means_all():
    assert writer.section_note_numbers("Heads [1]", NOTES) == [1]
    assert writer.section_note_numbers("Both [2, 1] and [7]", NOTES) == [1, 2]  # [7] is not a note
    assert writer.section_note_numbers("No marker", NOTES) == [1, 2]
    only_two = writer.notes_subset(NOTES, [2])
    assert only_two.startswith("[2] <source") and "131,072" in only_two and "32 query heads" not in only_two
    assert writer.notes_subset(NOTES, [1, 2]) == NOTES.notes
    odd = NOTES.model_copy(update={"notes": "free text, no blocks"})
    assert writer.notes_subset(odd, [1]) == "free text, no blocks"  # nothing cut from what it cannot split


SECTION_1 = {"heading": "Fewer heads", "sentences": [{"text": "Llama 3 8B has 32 query heads and 8 KV heads.", "note": 1}]}
SECTION_2 = {"heading": "The bytes", "sentences": [
    {"text": "The KV cache of Llama 3 8B takes 131,072 bytes per token in fp16.", "note": 2},
    {"text": "Llama 3 8B has 32 query heads.", "note": 2}]}  # a wrong label stays as the model gave it


async def test_cited_sections_sends_each_section_only_its_notes_and_keeps_every_label(gateway, llm):
    llm.script(Reply.json(SECTION_1), Reply.json(SECTION_2))
    draft, sent = await draft_of(gateway, draft_format="cited_sections")
    first, second = llm.requests
    assert first.wants_json and set(first.schema["properties"]) == {"heading", "sentences"}
    data1 = "\n".join(m["content"] for m in first.messages[1:-1])
    data2 = "\n".join(m["content"] for m in second.messages[1:-1])
    assert "32 query heads" in data1 and "131,072" not in data1
    assert "131,072" in data2 and "32 query heads" not in data2.split(" notes>>>")[-1]
    for req in (first, second):  # the notes only inside data blocks
        assert "131,072" not in req.messages[0]["content"] + req.messages[-1]["content"]
    assert draft.prompt == writer.CITED_SECTION_PROMPT and draft.title == OUTLINE.title and draft.version == 1
    assert draft.body == ("## Fewer heads\n\nLlama 3 8B has 32 query heads and 8 KV heads [1].\n\n## The bytes\n\n"
                          "The KV cache of Llama 3 8B takes 131,072 bytes per token in fp16 [2]. "
                          "Llama 3 8B has 32 query heads [2].")
    # ... and the Editor's unchanged rules catch the wrong label: code did not move it to [1].
    flagged = [c for c in check_rules(draft.body, NOTES) if c.status == "unsupported"]
    assert [c.sentence for c in flagged] == ["Llama 3 8B has 32 query heads [2]."]
    assert len(sent) == len(first.messages) + len(second.messages)


async def test_cited_sections_keeps_a_cut_sections_complete_sentences_and_leaves_out_an_empty_one(gateway, llm):
    raw = json.dumps(SECTION_2)
    llm.script(Reply(text='{"heading": "Fewer', finish_reason="length"),
               Reply(text=raw[:raw.index("Llama 3 8B has 32")], finish_reason="length"))
    draft, _ = await draft_of(gateway, draft_format="cited_sections")
    assert len(llm.requests) == 2 and draft.prompt == writer.CITED_SECTION_PROMPT
    assert draft.body == "## The bytes\n\nThe KV cache of Llama 3 8B takes 131,072 bytes per token in fp16 [2]."


async def test_cited_sections_with_no_usable_section_writes_the_post_in_one_call(gateway, llm):
    llm.script(Reply(text="{", finish_reason="length"), Reply(text="{", finish_reason="length"), Reply.json(GOOD))
    draft, _ = await draft_of(gateway, draft_format="cited_sections")
    assert len(llm.requests) == 3 and draft.prompt == writer.CITED_DRAFT_PROMPT
