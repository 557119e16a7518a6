"""How the citation support check's two thresholds were chosen (agents/editor.py SUPPORT_MIN_*).

    python -m evals.faithfulness.tune_support            # the figures on the tuning data, the thresholds they give
    python -m evals.faithfulness.tune_support --cross    # and the same method tuned on the other half (2 folds)
    python -m evals.faithfulness.tune_support --verify   # exit 1 if agents/editor.py holds other thresholds

The shipped thresholds come from tuning data only: the tuning half of the planted set
(evals/faithfulness/split.py: whole topic groups, seed 14) and the 25 independent clean drafts of the
judge set (evals/judge/drafts: their cited sentences, for the wrong-source threshold). For each
threshold: the most planted errors of its kind caught (by the rules or by this check) with no
false alarm at all on the tuning data, and of the thresholds that do that, the middle of the range
(rounded to 2 decimals), as far from both sides as the tuning data allow.
  - uncited claim: support of the planted sentence by its best note vs that of every uncited
    sentence of a tuning clean draft (the independent drafts cite per paragraph, so their uncited
    sentences are restatements by design, not false alarms: reported, not used);
  - wrong source: margin of the best uncited note over the best cited one, planted sentence vs
    every cited sentence of a clean draft the rules passed (tuning half and independent drafts).
`--cross` runs the same method with the halves swapped and scores each fold on the half it did not
see: a second held-out estimate of the method (not of the shipped constants). The last line is one
JSON object.
"""
from __future__ import annotations

import asyncio
import json
import sys

KINDS = ("wrong_number", "wrong_source", "uncited_claim")


def _plain(text: str) -> str:
    import re

    return re.sub(r"\s*\[[\d,\s]+\]", "", text).strip().rstrip(".")


async def prepare(rows: list[dict]) -> list[dict]:
    """Per row: the rules' results, the support vectors and, per sentence, its support by each note."""
    from agents import editor
    from evals.faithfulness.run import notes_for
    from tools.embeddings import vectors_for

    out = []
    for row in rows:
        notes = notes_for(row)
        vectors = await vectors_for(editor.support_texts(row["body"], notes))
        results = editor.check_rules(row["body"], notes)
        planted = _plain(row["planted_sentence"]) if row.get("planted_sentence") else None
        sentences = []
        for c in results:
            plain = editor._MARKER.sub("", c.sentence).strip()
            sentences.append({"result": c, "plain": plain, "planted": planted is not None and _plain(c.sentence) == planted,
                              "scores": editor.support_scores(plain, notes, vectors) if plain in vectors else {},
                              "usable": len(editor._content_words(plain)) >= editor.SUPPORT_MIN_WORDS})
        out.append({"row": row, "notes": notes, "vectors": vectors, "results": results, "sentences": sentences})
    return out


def _margin(s: dict) -> float | None:
    cites = s["result"].cites
    cited = [v for n, v in s["scores"].items() if n in cites]
    others = [v for n, v in s["scores"].items() if n not in cites]
    return round(max(others) - max(cited), 4) if cited and others else None


def _restatement(s: dict) -> float | None:
    return max(s["scores"].values()) if s["scores"] else None


def choose(positives: list[float], negatives: list[float]) -> tuple[float, int, float, float]:
    """(threshold, positives caught, low, high): catch the most positives with none of the
    negatives at or above the threshold; the middle of (max negative, lowest positive caught]."""
    low = max(negatives) if negatives else 0.0
    caught = sorted(p for p in positives if p > low)
    if not caught:
        return round(low + 0.01, 2), 0, low, low
    high = caught[0]
    return round((low + high) / 2, 2), len(caught), low, high


def thresholds(tuning: list[dict], independent: list[dict], *, echo=print) -> dict:
    """The two thresholds from tuning rows (prepared) and the independent clean drafts (prepared)."""
    sent = [(p["row"], s) for p in tuning for s in p["sentences"] if s["usable"]]
    uc = [s for r, s in sent if r["kind"] == "uncited_claim" and s["planted"]]
    uc_pos = [_restatement(s) for s in uc if s["result"].status == "not_a_claim"]
    uc_neg = [_restatement(s) for r, s in sent if r["kind"] == "clean" and not s["result"].cites
              and s["result"].status == "not_a_claim"]
    uc_t, uc_n, uc_lo, uc_hi = choose(uc_pos, uc_neg)
    ws = [s for r, s in sent if r["kind"] == "wrong_source" and s["planted"]]
    ws_pos = [m for s in ws if s["result"].status == "unchecked" and (m := _margin(s)) is not None]
    clean_cited = [s for r, s in sent + [(p["row"], s) for p in independent for s in p["sentences"] if s["usable"]]
                   if r["kind"] == "clean" and s["result"].cites and s["result"].status == "unchecked"]
    ws_neg = [m for s in clean_cited if (m := _margin(s)) is not None]
    ws_t, ws_n, ws_lo, ws_hi = choose(ws_pos, ws_neg)
    echo(f"  uncited claim: {len(uc) - len(uc_pos)}/{len(uc)} planted caught by the rules; the others' support "
         f"{sorted(uc_pos)}; clean uncited sentences ({len(uc_neg)}) up to {uc_lo}")
    echo(f"    -> min restatement {uc_t} (no tuning false alarm for any value in ({uc_lo}, {uc_hi}]), "
         f"catches {uc_n} more")
    echo(f"  wrong source: {len(ws) - len(ws_pos)}/{len(ws)} planted caught by the rules; the others' margin "
         f"{sorted(ws_pos)}; clean cited sentences the rules passed, with another note to compare ({len(ws_neg)}, "
         f"tuning half + independent), up to {ws_lo}")
    echo(f"    -> min margin {ws_t} (no tuning false alarm for any value in ({ws_lo}, {ws_hi}]), catches {ws_n} more")
    return {"restatement": uc_t, "restatement_range": [uc_lo, uc_hi], "margin": ws_t, "margin_range": [ws_lo, ws_hi]}


def evaluate(prepared: list[dict], *, restatement: float, margin: float) -> dict:
    """Caught per kind and false alarms per clean draft, rules + the support check at these thresholds."""
    from agents.editor import check_support

    caught = {k: [0, 0] for k in KINDS}
    alarms = [0, 0]
    for p in prepared:
        results = check_support(p["results"], p["notes"], p["vectors"], min_restatement=restatement, min_margin=margin)
        kind = p["row"]["kind"]
        if kind == "clean":
            alarms[0] += any(c.status == "unsupported" for c in results)
            alarms[1] += 1
        else:
            planted = next(i for i, s in enumerate(p["sentences"]) if s["planted"])
            caught[kind][0] += results[planted].status == "unsupported"
            caught[kind][1] += 1
    total = [sum(v[0] for v in caught.values()), sum(v[1] for v in caught.values())]
    return {**{k: v for k, v in caught.items()}, "caught": total, "false_alarms": alarms}


def _line(name: str, ev: dict) -> str:
    c, a = ev["caught"], ev["false_alarms"]
    kinds = ", ".join(f"{k} {ev[k][0]}/{ev[k][1]}" for k in KINDS)
    return (f"  {name}: caught {c[0]}/{c[1]} ({c[0] / max(c[1], 1):.1%}: {kinds}); "
            f"false alarms {a[0]}/{a[1]} clean drafts ({a[0] / max(a[1], 1):.1%})")


async def study(*, cross: bool, echo=print) -> dict:
    from evals.faithfulness.run import load_independent_clean, load_planted
    from evals.faithfulness.split import planted_halves

    tune_ids, report_ids = planted_halves()
    rows = load_planted()
    independent = await prepare(load_independent_clean())
    a = await prepare([r for r in rows if r["draft"] in tune_ids])
    b = await prepare([r for r in rows if r["draft"] in report_ids])
    echo(f"fold 1 (shipped): tuned on {', '.join(sorted(tune_ids))} + {len(independent)} independent clean drafts")
    t1 = thresholds(a, independent, echo=echo)
    out = {"restatement": t1["restatement"], "margin": t1["margin"], "fold1": t1}
    t1["tuning"] = evaluate(a, restatement=t1["restatement"], margin=t1["margin"])
    t1["held_out"] = evaluate(b, restatement=t1["restatement"], margin=t1["margin"])
    echo(_line("tuning half (seen)", t1["tuning"]))
    echo(_line("reported half (held out)", t1["held_out"]))
    if cross:
        echo(f"fold 2 (the method with the halves swapped): tuned on {', '.join(sorted(report_ids))} + the "
             f"independent drafts")
        t2 = thresholds(b, independent, echo=echo)
        t2["tuning"] = evaluate(b, restatement=t2["restatement"], margin=t2["margin"])
        t2["held_out"] = evaluate(a, restatement=t2["restatement"], margin=t2["margin"])
        echo(_line("its tuning half (seen)", t2["tuning"]))
        echo(_line("its held-out half", t2["held_out"]))
        pooled = {k: [t1["held_out"][k][0] + t2["held_out"][k][0], t1["held_out"][k][1] + t2["held_out"][k][1]]
                  for k in (*KINDS, "caught", "false_alarms")}
        echo(_line("both folds' held-out halves pooled (the method's estimate)", pooled))
        out["fold2"], out["cross_pooled"] = t2, pooled
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    from agents import editor

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cross", action="store_true", help="also tune on the other half and score on the first (2 folds)")
    ap.add_argument("--verify", action="store_true", help="exit 1 unless agents/editor.py holds these thresholds")
    a = ap.parse_args(argv)
    out = asyncio.run(study(cross=a.cross))
    have = {"restatement": editor.SUPPORT_MIN_RESTATEMENT, "margin": editor.SUPPORT_MIN_MARGIN}
    out["in_agents_editor"] = have
    print(json.dumps(out))
    if a.verify and (have["restatement"] != out["restatement"] or have["margin"] != out["margin"]):
        print(f"agents/editor.py has {have}, the tuning data give {out['restatement']} / {out['margin']}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
