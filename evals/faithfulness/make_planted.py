"""Generate the planted-error set for `newsroom eval-faithfulness` (evals/faithfulness/planted.jsonl).

    python -m evals.faithfulness.make_planted        # rewrites planted.jsonl (seeded: same output every run)

From pairs of related corpus notes: two excerpts ([1] and [2], a section of each note, at most 700
characters like the Researcher's notes), a clean draft (an uncited framing sentence, then source
sentences reworded lightly and cited), and planted variants with exactly one error each:
  wrong_number   a number in a cited sentence changed to a value its source does not give
  wrong_source   a cited sentence's marker switched to the other source
  uncited_claim  a cited sentence's marker removed
The eval must flag the planted sentence (caught) and nothing in a clean draft (false alarm).
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "corpus"
OUT = HERE / "planted.jsonl"
MAX_EXCERPT = 700
SEED = 14

# Related notes: a wrong-source swap between them is the hard case (same vocabulary).
PAIRS = [
    ("grouped-query-attention", "kv-cache-arithmetic"), ("vllm-pagedattention", "continuous-batching"),
    ("lora-low-rank-adaptation", "qlora-4bit-finetuning"), ("lora-rank-sweep", "serving-lora-adapters"),
    ("dpo-direct-preference-optimization", "rlhf-ppo-pipeline"), ("reward-modeling-bradley-terry", "rlhf-ppo-pipeline"),
    ("flash-attention", "memory-bandwidth-bound-decoding"), ("speculative-decoding", "prefill-decode-latency"),
    ("prefix-caching", "vllm-pagedattention"), ("hnsw-index", "ivfflat-index"),
    ("hybrid-search-rrf", "rerankers-cross-encoders"), ("hyde-query-expansion", "embedding-model-selection"),
    ("ragas-evaluation", "rag-chunking-strategies"), ("llm-as-judge-calibration", "editor-rubric-decision"),
    ("circuit-breakers", "retries-backoff-jitter"), ("serializable-transactions-retries", "cockroachdb-vs-postgresql"),
    ("vector-storage-benchmark", "pgvector-filtering"), ("quantization-formats", "qlora-4bit-finetuning"),
    ("tokenization-vocabulary", "rmsnorm-swiglu"), ("rope-positional-encoding", "grouped-query-attention"),
    ("mixture-of-experts-routing", "memory-bandwidth-bound-decoding"), ("sft-dataset-pipeline", "contamination-vs-confabulation"),
    ("exactly-once-publishing", "langgraph-checkpointing-interrupts"), ("agent-tracing-cost", "react-agents-tool-use"),
]
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_NUM = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w])")
# Light rewording so a clean draft is not the source verbatim (what a writer does).
REWORDS = [(" is ", " is "), ("However, ", ""), (" therefore ", " so "), (" which ", " that "), ("In short, ", "")]


def sections(note: str) -> list[tuple[str, str]]:
    text = (CORPUS / f"{note}.md").read_text()
    text = re.sub(r"^---\n.*?\n---\n", "", text, flags=re.DOTALL)
    title = re.search(r"^# (.+)$", text, re.MULTILINE).group(1).strip()
    out, heading, buf = [], title, []
    for line in text.splitlines():
        if line.startswith("# "):
            continue
        if line.startswith("## "):
            if buf:
                out.append((heading, " ".join(buf).strip()))
            heading, buf = line[3:].strip(), []
        elif line.strip() and not line.lstrip().startswith(("|", "-", "*", "```")):
            buf.append(line.strip())
    if buf:
        out.append((heading, " ".join(buf).strip()))
    return [(h, b) for h, b in out if len(b) > 80]


def excerpt_of(note: str) -> tuple[str, str, str]:
    """(title, heading, excerpt): the section richest in numbers, cut at a sentence end <= 700 chars."""
    text = (CORPUS / f"{note}.md").read_text()
    title = re.search(r"^# (.+)$", text, re.MULTILINE).group(1).strip()
    heading, body = max(sections(note), key=lambda hb: (len(_NUM.findall(hb[1])), -len(hb[1])))
    sents, out = _SENT.split(body), ""
    for s in sents:
        if len(out) + len(s) + 1 > MAX_EXCERPT:
            break
        out = (out + " " + s).strip()
    return title, heading, out or body[:MAX_EXCERPT]


def _plain_title(title: str) -> str:
    t = re.sub(r"\s*\(?\b[\w.-]*\d[\w.,-]*\)?", "", title.split(":")[0])
    return " ".join(t.split()).lower()


def reword(sentence: str) -> str:
    for a, b in REWORDS:
        sentence = sentence.replace(a, b)
    return sentence[0].upper() + sentence[1:] if sentence else sentence


def build(rng: random.Random) -> list[dict]:
    rows = []
    for i, (a, b) in enumerate(PAIRS, 1):
        (ta, ha, xa), (tb, hb, xb) = excerpt_of(a), excerpt_of(b)
        sa = [s for s in _SENT.split(xa) if len(s.split()) >= 6][:3]
        sb = [s for s in _SENT.split(xb) if len(s.split()) >= 6][:2]
        # An uncited framing sentence (no fact, no number): a clean draft has one, as real ones do.
        sentences = [(f"This post looks at {_plain_title(ta)} and how it relates to {_plain_title(tb)}.", [])]
        sentences += [(reword(s), [1]) for s in sa] + [(reword(s), [2]) for s in sb]
        sources = [{"n": 1, "note": a, "title": ta, "heading": ha, "excerpt": xa},
                   {"n": 2, "note": b, "title": tb, "heading": hb, "excerpt": xb}]
        draft_id = f"d{i:02d}"
        rows.append({"id": f"{draft_id}-clean", "draft": draft_id, "kind": "clean", "topic": f"{ta} and {tb}",
                     "sources": sources, "body": _body(sentences), "planted_sentence": None})
        cited = [k for k, (_, c) in enumerate(sentences) if c]
        numeric = [k for k in cited if _NUM.search(sentences[k][0])]
        if numeric:  # wrong number
            k = rng.choice(numeric)
            text, cites = sentences[k]
            src = xa if cites == [1] else xb
            m = rng.choice(list(_NUM.finditer(text)))
            bad = _wrong_value(m.group(1), src, rng)
            planted = sentences[:k] + [(text[:m.start(1)] + bad + text[m.end(1):], cites)] + sentences[k + 1:]
            rows.append(_variant(draft_id, "wrong_number", planted, k, sources))
        k = rng.choice(cited)  # wrong source
        text, cites = sentences[k]
        planted = sentences[:k] + [(text, [2 if cites == [1] else 1])] + sentences[k + 1:]
        rows.append(_variant(draft_id, "wrong_source", planted, k, sources))
        k = rng.choice(cited)  # uncited claim
        planted = sentences[:k] + [(sentences[k][0], [])] + sentences[k + 1:]
        rows.append(_variant(draft_id, "uncited_claim", planted, k, sources))
    return rows


def _wrong_value(raw: str, source: str, rng: random.Random) -> str:
    have = {x.replace(",", "") for x in _NUM.findall(source)}
    v = float(raw.replace(",", ""))
    for cand in (v * 2, v + 1, v * 3, v / 2, v + 7):
        s = (f"{cand:,.0f}" if "," in raw else str(int(cand))) if cand == int(cand) and "." not in raw else f"{cand:.2f}"
        if s.replace(",", "") not in have and s != raw:
            return s
    return raw + "7"


def _variant(draft_id, kind, sentences, k, sources) -> dict:
    return {"id": f"{draft_id}-{kind}", "draft": draft_id, "kind": kind, "topic": "", "sources": sources,
            "body": _body(sentences), "planted_sentence": sentences[k][0]}


def _body(sentences) -> str:
    """The sentences joined, each cited one ending '... [n].'"""
    out = []
    for text, cites in sentences:
        text = text.rstrip()
        if cites:
            stem = text[:-1] if text.endswith((".", "!", "?")) else text
            text = f"{stem} [{', '.join(map(str, cites))}]."
        out.append(text)
    return " ".join(out)


def main() -> int:
    rows = build(random.Random(SEED))
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"wrote {len(rows)} drafts to {OUT}: {kinds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
