"""`newsroom eval-faithfulness`'s planted-error scoring: the committed set's shape, caught / false
alarm over the real citation check (rules alone, and rules + the claim call on a scripted judge
over real HTTP), and the rules on the independent clean drafts of the judge set."""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from agents.editor import check_rules
from evals.faithfulness import make_planted
from evals.faithfulness import run as faith
from tests.engine_fixtures import JUDGE

SOURCE = ("Llama 3.1 8B has 32 query heads and 8 KV heads of dimension 128, so four query heads share each KV "
          "head and the KV cache is four times smaller than with MHA.")
CLEAN = "Llama 3.1 8B keeps 8 KV heads for its 32 query heads [1]. That makes its cache four times smaller than MHA's [1]."
WRONG_NUMBER = "Llama 3.1 8B keeps 16 KV heads for its 32 query heads [1]."
UNCITED = "Sharing KV heads costs the model nothing in quality."


def _row(kind: str, body: str, planted: str | None) -> dict:
    return {"id": f"x-{kind}", "draft": "x", "kind": kind, "topic": "GQA", "body": body, "planted_sentence": planted,
            "sources": [{"n": 1, "note": "grouped-query-attention", "title": "Grouped-query attention (GQA)",
                         "heading": "Llama 3.1 8B in numbers", "excerpt": SOURCE}]}


ROWS = [_row("clean", CLEAN, None),
        _row("wrong_number", WRONG_NUMBER + " That makes its cache four times smaller than MHA's [1].", WRONG_NUMBER),
        _row("uncited_claim", CLEAN + " " + UNCITED, UNCITED)]


def _plain(s: str) -> str:
    return re.sub(r"\s*\[[\d,\s]+\]", "", s).strip().rstrip(".")


@pytest.mark.parametrize("path", [faith.PLANTED, make_planted.OUT_HELDOUT], ids=["tuned", "heldout"])
def test_the_committed_sets_are_well_formed(path):
    rows = faith.load_planted(path)
    by_draft = defaultdict(list)
    for r in rows:
        by_draft[r["draft"]].append(r)
    assert len(by_draft) >= 20
    for draft, rs in by_draft.items():
        assert Counter(r["kind"] for r in rs) == {"clean": 1, "wrong_number": 1, "wrong_source": 1,
                                                    "uncited_claim": 1}, draft
        clean = next(r for r in rs if r["kind"] == "clean")
        for r in rs:
            assert r["sources"] == clean["sources"], r["id"]
            if r["kind"] != "clean":
                assert r["body"] != clean["body"], r["id"]
                # the planted sentence is one of the draft's sentences, as the check splits them
                sentences = [_plain(c.sentence) for c in check_rules(r["body"], faith.notes_for(r))]
                assert _plain(r["planted_sentence"]) in sentences, r["id"]


async def test_rules_only_scoring():
    lines: list[str] = []
    out = await faith.run_planted(None, use_judge=False, max_tokens=100, rows=ROWS, echo=lines.append)
    assert out["planted"] == 2 and out["caught"] == 0.5 and out["false_alarms"] == 0.0
    assert out["by_kind"] == {"wrong_number": 1.0, "uncited_claim": 0.0} and out["missed"] == ["x-uncited_claim"]
    assert out["checked_by"] == ["rules"] and not any("caught " in ln and "x-" in ln for ln in lines)  # no progress


async def test_the_claim_call_catches_what_the_rules_cannot_and_its_false_alarms_count(db, llm):
    """The scripted judge labels every claim it is sent: the uncited opinion as a claim without a
    citation, the cited ones supported with a quote from the source; then a judge that calls a
    clean sentence unsupported makes a false alarm."""
    from tools.llm import get_gateway

    def judge(unsupported: str):
        def reply(req):
            asked = re.findall(r"^(\d+)\. (.+) \(cites [^()]*\)$", req.prompt, re.MULTILINE)  # claims_messages
            claims = []
            for i, text in asked:
                bad = unsupported in text
                claims.append({"id": int(i), "verdict": "unsupported" if bad else "supported",
                               "quote": "" if bad else "32 query heads and 8 KV heads"})
            return {"claims": claims}
        return reply

    llm.on_chat(judge(UNCITED[:30]), model=JUDGE)
    lines: list[str] = []
    out = await faith.run_planted(get_gateway(), use_judge=True, max_tokens=200, rows=ROWS, echo=lines.append)
    assert out["caught"] == 1.0 and out["false_alarms"] == 0.0, lines
    assert out["checked_by"] == ["rules", f"rules+{JUDGE}"]  # the wrong number never reached the judge
    assert len(llm.requests_for(JUDGE)) == 2
    assert any(ln.split()[:2] == ["x-uncited_claim", "caught"] and JUDGE in ln for ln in lines)  # progress lines

    llm.on_chat(judge("cache four times smaller"), model=JUDGE)
    lines = []
    out = await faith.run_planted(get_gateway(), use_judge=True, max_tokens=200, rows=ROWS[:1], echo=lines.append)
    assert out["false_alarms"] == 1.0 and out["alarms"] == ["x-clean"]
    assert any("FALSE ALARM" in ln for ln in lines) and any("cache four times smaller" in ln for ln in lines)


def test_the_rules_on_the_independent_clean_drafts():
    rows = faith.load_independent_clean()
    assert len(rows) >= 20 and all(r["kind"] == "clean" and r["sources"] for r in rows)
    lines: list[str] = []
    out = faith.run_independent(rows, echo=lines.append)
    assert out["drafts"] == len(rows) and out["cited_sentences"] > 2 * len(rows)
    assert out["cited_flagged"] == sum(ln.startswith("    ") for ln in lines)
    assert lines[0].startswith("independent clean drafts")
