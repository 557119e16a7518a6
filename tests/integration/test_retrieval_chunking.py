"""Chunking with the real all-MiniLM-L6-v2 tokenizer: paragraphs stay whole, nothing is cut
mid-sentence, and no chunk (as embedded, with its context line) exceeds the model's max tokens."""
from __future__ import annotations

import itertools
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.retrieval_helpers import CORPUS
from tools.chunking import chunk_document, parse_document, parse_html, parse_markdown, split_sentences


def _max(emb) -> int:
    return emb.load().max_seq_length


async def test_embedder_reports_model_limits(embedder):  # noqa: F811
    assert await embedder.dimension() == 384
    assert await embedder.max_tokens() == 256
    count = await embedder.token_counter()
    long = "word " * 600
    # counted without truncation (the model itself would silently stop at 256)
    assert count([long])[0] > 600


async def test_corpus_chunks_fit_the_embedder_and_keep_paragraphs_whole(embedder):  # noqa: F811
    count = await embedder.token_counter()
    limit = _max(embedder)
    files = sorted(CORPUS.glob("*.md"))
    assert len(files) >= 40
    total = 0
    for f in files:
        doc = parse_document(f.read_text(), "markdown", fallback_title=f.stem)
        chunks = chunk_document(doc, count, max_tokens=limit, overlap_tokens=32)
        assert chunks, f
        exact = count([c.embed_text for c in chunks])
        assert max(exact) <= limit, (f.name, exact)
        assert [c.tokens for c in chunks] == exact
        joined = [c.content for c in chunks]
        for block in doc.blocks:
            if block.kind == "heading":
                continue
            if count([block.text])[0] <= limit - 40:  # fits a chunk with its context line
                assert any(block.text in c for c in joined), (f.name, block.text[:80])
        total += len(chunks)
    assert total >= len(files)


def _fixed_windows(text: str, words: int = 400, overlap: int = 50) -> list[str]:
    w = text.split()
    return [" ".join(w[i:i + words]) for i in range(0, len(w), words - overlap)]


async def test_answer_paragraph_is_not_split_across_chunks(embedder):  # noqa: F811
    """The seed's Query 7: fixed 400-word windows cut the DPO explanation in two; ours keep it."""
    count = await embedder.token_counter()
    text = (CORPUS / "dpo-direct-preference-optimization.md").read_text()
    doc = parse_markdown(text)
    answer = next(b.text for b in doc.blocks if b.text.startswith("PPO-based RLHF needs"))
    # Unrelated prose before it, as in a long note, sized so that every 400-word window (50 words
    # of overlap) holds only part of the answer.
    needle = " ".join(answer.split())
    for n in range(40, 160):
        filler = " ".join(f"Filler sentence {i} is about something else entirely." for i in range(n))
        long_text = f"# Notes\n\n{filler}\n\n## Why DPO replaced PPO\n\n{answer}\n"
        windows = _fixed_windows(re.sub(r"#+ ", "", long_text))
        if not any(needle in w for w in windows):
            break
    else:
        raise AssertionError("no filler length splits the answer in fixed windows")
    chunks = chunk_document(parse_markdown(long_text), count, max_tokens=_max(embedder), overlap_tokens=32)
    holders = [c for c in chunks if answer in c.content]
    assert len(holders) == 1
    assert holders[0].heading_path == "Notes > Why DPO replaced PPO"


async def test_oversize_paragraph_splits_at_sentence_ends_with_overlap(embedder):  # noqa: F811
    count = await embedder.token_counter()
    sentences = [f"Sentence {i} says that the KV cache of layer {i} holds {i * 128} values per token."
                 for i in range(60)]
    text = "# Big\n\n" + " ".join(sentences) + "\n"
    chunks = chunk_document(parse_markdown(text), count, max_tokens=128, overlap_tokens=24)
    assert len(chunks) > 3
    assert max(count([c.embed_text for c in chunks])) <= 128
    for prev, c in itertools.pairwise(chunks):
        pieces = [s for _, s in split_sentences(c.content)]
        assert all(p in sentences for p in pieces), "a chunk boundary fell inside a sentence"
        assert c.overlap, "consecutive chunks of one section overlap"
        assert prev.content.endswith(c.overlap)
        assert count([c.overlap])[0] - 2 <= 24
    covered = " ".join(c.content for c in chunks)
    assert all(s in covered for s in sentences)


def test_html_and_text_parsing():
    doc = parse_html("<html><head><title>T &amp; U</title><style>p{}</style></head><body><nav>menu</nav>"
                     "<h1>Main</h1><p>First para.</p><ul><li>one</li><li>two</li></ul><h2>Sub</h2>"
                     "<p>Second <b>para</b>.</p><script>var x = 1;</script><pre>code  kept\n  indented</pre></body></html>")
    assert doc.title == "T & U"
    kinds = [(b.kind, b.text) for b in doc.blocks]
    assert ("heading", "Main") in kinds and ("heading", "Sub") in kinds
    assert ("para", "First para.") in kinds and ("para", "Second para.") in kinds
    assert any(k == "para" and "- one" in t and "- two" in t for k, t in kinds)
    assert ("code", "code  kept\n  indented") in kinds
    assert not any("var x" in t or "menu" in t for _, t in kinds)
    txt = parse_document("Para one.\nstill one.\n\nPara two.", "text", fallback_title="notes")
    assert txt.title == "notes" and [b.text for b in txt.blocks] == ["Para one.\nstill one.", "Para two."]


def test_sentence_splitter_respects_abbreviations_and_numbers():
    got = [s for _, s in split_sentences("Use e.g. LoRA here. It is 0.52% of 8.03B params! Next, J. Smith said so.")]
    assert got == ["Use e.g. LoRA here.", "It is 0.52% of 8.03B params!", "Next, J. Smith said so."]


_WORDS = st.sampled_from("the cache holds keys and values for each token layer head GPU memory bandwidth "
                         "attention quantization adapter rank vector index recall latency".split())
_SENTENCE = st.lists(_WORDS, min_size=3, max_size=30).map(lambda ws: ws[0].capitalize() + " " + " ".join(ws[1:]) + ".")
_PARA = st.lists(_SENTENCE, min_size=1, max_size=25).map(" ".join)
_SECTION = st.tuples(st.lists(_WORDS, min_size=1, max_size=4).map(" ".join), st.lists(_PARA, min_size=1, max_size=5))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sections=st.lists(_SECTION, min_size=1, max_size=5), max_tokens=st.sampled_from([64, 128, 256]))
def test_property_chunks_fit_cover_and_respect_paragraphs(sections, max_tokens):
    from tools.embeddings import get_embedder

    count = get_embedder().count_tokens_sync  # the real tokenizer (model loaded once per process)
    md = "# Title\n\n" + "\n\n".join(f"## {h}\n\n" + "\n\n".join(ps) for h, ps in sections)
    doc = parse_markdown(md)
    chunks = chunk_document(doc, count, max_tokens=max_tokens, overlap_tokens=16)
    assert max(count([c.embed_text for c in chunks])) <= max_tokens
    contents = [c.content for c in chunks]
    for _, paras in sections:
        for p in paras:
            if count([p])[0] + 30 <= max_tokens:
                assert any(p in c for c in contents)  # a paragraph that fits is never split
            for s in [s for _, s in split_sentences(p)]:
                assert any(s in c for c in contents)  # nothing is lost, no sentence is cut
