"""Generate the planted-error set for `newsroom eval-faithfulness` (evals/faithfulness/planted.jsonl).

    python -m evals.faithfulness.make_planted            # rewrites planted.jsonl (deterministic)
    python -m evals.faithfulness.make_planted --heldout  # rewrites planted-heldout.jsonl from drafts_heldout.py

From the hand-written drafts in evals/faithfulness/drafts.py (one per pair of related corpus notes,
every fact paraphrased as a writer writes it): the two excerpts ([1] and [2], the section of each
note richest in numbers, at most 700 characters like the Researcher's notes), the clean draft, and
three planted variants with exactly one error each:
  wrong_number   a cited sentence with a wrong number (a value the source does not give, one it
                 gives for something else, or a wrong count in words)
  wrong_source   a cited claim cited to the other source, which does not state it
  uncited_claim  a fact from the sources in the writer's own words, without a citation
The eval must flag the planted sentence (caught) and nothing in a clean draft (false alarm).
(The first version of this set reworded source sentences lightly, which a copy rule caught; see
README Numbers.)
The held-out set (drafts_heldout.py -> planted-heldout.jsonl) is built the same way, row for row; it
was written apart from the rules and is for scoring the final rules once
(`newsroom eval-faithfulness --no-live --rules-only --planted-file evals/faithfulness/planted-heldout.jsonl`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "corpus"
OUT = HERE / "planted.jsonl"
OUT_HELDOUT = HERE / "planted-heldout.jsonl"
MAX_EXCERPT = 700

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_NUM = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w])")


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


def build(drafts: list[dict] | None = None) -> list[dict]:
    """The rows for `drafts` (default: drafts.py's DRAFTS)."""
    if drafts is None:
        from evals.faithfulness.drafts import DRAFTS as drafts

    rows = []
    for d in drafts:
        a, b = d["pair"]
        (ta, ha, xa), (tb, hb, xb) = excerpt_of(a), excerpt_of(b)
        sources = [{"n": 1, "note": a, "title": ta, "heading": ha, "excerpt": xa},
                   {"n": 2, "note": b, "title": tb, "heading": hb, "excerpt": xb}]
        sentences = [(text, list(cites)) for text, cites in d["sentences"]]
        rows.append({"id": f"{d['draft']}-clean", "draft": d["draft"], "kind": "clean", "topic": f"{ta} and {tb}",
                     "sources": sources, "body": _body(sentences), "planted_sentence": None})
        for kind in ("wrong_number", "wrong_source", "uncited_claim"):
            change = d[kind]
            k = change["at"]
            text, cites = sentences[k]
            if kind == "wrong_source":
                new = (text, list(change["cites"]))
                assert new[1] != cites, d["draft"]
            else:
                new = (change["text"], [] if kind == "uncited_claim" else cites)
                assert cites, f"{d['draft']} {kind}: the changed sentence must be a cited one"
            rows.append(_variant(d["draft"], kind, sentences[:k] + [new] + sentences[k + 1:], k, sources))
    return rows


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


def build_heldout() -> list[dict]:
    from evals.faithfulness.drafts_heldout import DRAFTS

    return build(DRAFTS)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heldout", action="store_true", help="build planted-heldout.jsonl from drafts_heldout.py")
    a = ap.parse_args(argv)
    rows, out = (build_heldout(), OUT_HELDOUT) if a.heldout else (build(), OUT)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"wrote {len(rows)} drafts to {out}: {kinds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
