"""Citation faithfulness: `newsroom eval-faithfulness`.

    newsroom eval-faithfulness                      # planted-error set, then 20 live posts
    newsroom eval-faithfulness --no-live            # the planted-error set only
    newsroom eval-faithfulness --rules-only         # the deterministic checks alone (no judge call)
    newsroom eval-faithfulness --no-support         # without the embedding support check
    newsroom eval-faithfulness --live-topics 5      # fewer live posts (each is several LLM calls)
    newsroom eval-faithfulness --no-live --rules-only --planted-file evals/faithfulness/planted-heldout.jsonl
                                                    # another planted set (the held-out one, for scoring once)

1. Planted errors (evals/faithfulness/planted.jsonl, made by make_planted.py): clean drafts and
   drafts with one planted error each (a wrong number, a citation to the wrong source, an uncited
   claim), run through the Editor's citation check as the graph runs it (rules, the embedding
   support check, then the batched claim-support call on the configured judge route). The support
   check's thresholds were chosen on the tuning half (evals/faithfulness/split.py,
   tune_support.py): each half is summarised apart, then the whole set. Caught = the planted sentence is flagged
   unsupported; a false alarm = a clean draft that fails the check. Goals: >= 95% caught, <= 5%
   false alarms.
2. Live posts: for each topic (the first N of evals/retrieval/topics.jsonl), research (plan ->
   retrieve over the ingested corpus) -> outline -> draft -> citation check with the configured
   routes; the support rate per post and overall.

The last line printed is one JSON object.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLANTED = HERE / "planted.jsonl"
TOPICS = HERE.parent / "retrieval" / "topics.jsonl"
CORPUS = HERE.parent / "corpus"


def load_planted(path: Path = PLANTED) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_independent_clean() -> list[dict]:
    """Clean drafts written by someone else for another purpose: the judge set's drafts with no
    planted defect (evals/judge/drafts, issue 15; they cite corpus notes as [n] and every figure in
    them matches the notes). Each cited source is the whole note, as the judge set's labels were
    checked against the whole note. A false-alarm check of the rules on writing they were not
    tuned on."""
    import re

    from evals.judge.labels import CORPUS_DIR, load_set

    rows = []
    for d in load_set():
        if d.defect != "none" or not d.sources:
            continue
        sources = []
        for n, name in enumerate(d.sources, start=1):
            text = (CORPUS_DIR / name).read_text(encoding="utf-8")
            if text.startswith("---\n") and "\n---\n" in text:
                text = text.split("\n---\n", 1)[1]
            m = re.search(r"^#[ \t]+(.+)$", text, re.MULTILINE)
            sources.append({"n": n, "note": Path(name).stem, "title": m.group(1).strip() if m else Path(name).stem,
                            "heading": "", "excerpt": text.strip()})
        rows.append({"id": f"judge-set:{d.id}", "draft": d.id, "kind": "clean", "topic": d.topic,
                     "sources": sources, "body": d.body, "planted_sentence": None})
    return rows


def notes_for(row: dict):
    from agents.models import Citation, ResearchNotes

    cites = [Citation(n=s["n"], chunk_id=f"{row['draft']}-{s['n']}", source_title=s["title"], heading=s["heading"],
                      source_path=s["note"], excerpt=s["excerpt"]) for s in row["sources"]]
    return ResearchNotes(notes="\n\n".join(f"[{c.n}] {c.excerpt}" for c in cites), citations=cites, grounded=True)


def _flagged(report, sentence: str) -> bool:
    import re

    plain = lambda t: re.sub(r"\s*\[[\d,\s]+\]", "", t).strip().rstrip(".")  # noqa: E731
    target = plain(sentence)
    return any(c.status == "unsupported" and plain(c.sentence) == target for c in report.claims)


async def support_vectors_for(row: dict):
    """The unit vectors the support check compares for one row (the project's embedder, cached)."""
    from tools.embeddings import vectors_for

    return await vectors_for(support_texts_of(row))


async def run_planted(gateway, *, use_judge: bool, max_tokens: int, rows: list[dict] | None = None,
                      echo=print, progress: bool | None = None, title: str = "planted-error set",
                      support: bool = False, halves: tuple[set[str], set[str]] | None = None) -> dict:
    """The citation check on each row as the Editor runs it. `support`: with the embedding support
    check between the rules and the claim call (its time per draft is measured apart, embedding
    included). `halves`: (tuning, reported) draft ids, each summarised apart before the whole set."""
    from agents.editor import check_citations

    rows = rows if rows is not None else load_planted()
    progress = use_judge if progress is None else progress
    outcomes: list[dict] = []
    support_flags: list[str] = []
    embed_seconds: list[float] = []
    check_seconds: list[float] = []
    load_seconds = None
    if support:  # the model loads once per process (the retriever's embedder, already up in a server)
        from tools.embeddings import clear_vector_cache, get_embedder

        t_load = time.perf_counter()
        await get_embedder().embed(["warm up"])
        load_seconds = time.perf_counter() - t_load
    t0 = time.perf_counter()
    for row in rows:
        t_row = time.perf_counter()
        vectors = None
        if support:
            clear_vector_cache()  # timed as a first draft: nothing cached (a revision reuses the notes' vectors)
            t_embed = time.perf_counter()
            vectors = await support_vectors_for(row)
            embed_seconds.append(time.perf_counter() - t_embed)
        t_check = time.perf_counter()
        report = await check_citations(gateway, body=row["body"], notes=notes_for(row), draft_version=1,
                                       thread_id=None, use_judge=use_judge, max_tokens=max_tokens,
                                       support_vectors=vectors)
        if not use_judge:
            check_seconds.append(time.perf_counter() - t_check)
        if row["kind"] == "clean":
            ok = report.passed
        else:
            ok = _flagged(report, row["planted_sentence"])
        outcomes.append({"row": row, "report": report, "ok": ok})
        for c in report.failures:
            if c.by == "support":
                support_flags.append(f"{row['id']}: \"{_plain_text(c.sentence)[:110]}\" {'; '.join(c.problems)}")
        if progress:  # a slow judge: each draft's outcome as it comes, so a stopped run still tells
            outcome = ("passed" if ok else "FALSE ALARM") if row["kind"] == "clean" else ("caught" if ok else "MISSED")
            echo(f"  {row['id']:<18} {outcome:<11} {report.checked_by}"
                 f"{' (claim call failed)' if report.error else ''} {time.perf_counter() - t_row:.0f}s")
            for c in report.failures:  # what was flagged, and on what grounds (the judge's quote)
                echo(f"      flagged ({c.by}): \"{c.sentence[:100]}\" {'; '.join(c.problems)[:140]}"
                     + (f" quote: \"{c.quote[:80]}\"" if c.quote else ""))
    elapsed = time.perf_counter() - t0
    if support_flags:
        echo(f"support check flags ({len(support_flags)}, sentences the rules had passed):")
        for line in support_flags:
            echo(f"    {line}")
    out: dict = {}
    if halves is not None:
        tune_ids, report_ids = halves
        for name, ids in (("tuning half", tune_ids), ("reported half", report_ids)):
            part = [o for o in outcomes if o["row"]["draft"] in ids]
            out[name.split()[0]] = _summary(part, echo=echo, title=f"{title}, {name} ({', '.join(sorted(ids))})",
                                            elapsed=None, quiet=True)
    out.update(_summary(outcomes, echo=echo, title=f"{title}, whole set" if halves else title, elapsed=elapsed))
    if embed_seconds:
        out["support_cost"] = {"model_load_s": round(load_seconds, 3), "embed_ms": _ms_stats(embed_seconds),
                               "texts_per_draft": round(sum(len(support_texts_of(r)) for r in rows) / len(rows), 1)}
        if check_seconds:
            out["support_cost"]["check_ms"] = _ms_stats(check_seconds)
        c = out["support_cost"]
        echo(f"  support check cost per draft, nothing cached (a first draft): embedding {c['texts_per_draft']} "
             f"texts mean {c['embed_ms']['mean']} ms (p50 {c['embed_ms']['p50']}, max {c['embed_ms']['max']})"
             + (f"; rules + support decisions mean {c['check_ms']['mean']} ms" if check_seconds else "")
             + f"; model load once per process {load_seconds:.1f} s")
    return out


async def _timed_vectors(rows: list[dict], *, echo) -> dict[str, dict]:
    """Support vectors per row, each timed with nothing cached. The independent drafts cite whole
    notes (a Researcher's excerpt is <= 700 characters): an upper bound of the check's cost."""
    from tools.embeddings import clear_vector_cache

    out, seconds, texts = {}, [], 0
    for r in rows:
        clear_vector_cache()
        t = time.perf_counter()
        out[r["id"]] = await support_vectors_for(r)
        seconds.append(time.perf_counter() - t)
        texts += len(out[r["id"]])
    stats = _ms_stats(seconds)
    echo(f"support check embedding on the independent drafts (whole notes as sources: an upper bound), nothing "
         f"cached: {texts / max(len(rows), 1):.0f} texts per draft, mean {stats['mean']} ms (p50 {stats['p50']}, "
         f"max {stats['max']})")
    return out


def support_texts_of(row: dict) -> list[str]:
    from agents.editor import support_texts

    return support_texts(row["body"], notes_for(row))


def _ms_stats(seconds: list[float]) -> dict:
    per = sorted(seconds)
    return {"mean": round(1000 * sum(per) / len(per), 1), "p50": round(1000 * per[len(per) // 2], 1),
            "max": round(1000 * per[-1], 1)}


def _plain_text(sentence: str) -> str:
    import re

    return re.sub(r"\s*\[[\d,;\s]+\]", "", sentence).strip()


def _summary(outcomes: list[dict], *, echo, title: str, elapsed: float | None, quiet: bool = False) -> dict:
    by_kind: dict[str, list[bool]] = defaultdict(list)
    alarms, alarm_details, misses = [], [], []
    judge_models: set[str] = set()
    judge_errors = 0
    for o in outcomes:
        row, report = o["row"], o["report"]
        judge_models.add(report.checked_by)
        judge_errors += bool(report.error)
        by_kind[row["kind"]].append(o["ok"])
        if row["kind"] == "clean" and not o["ok"]:
            alarms.append(row["id"])
            alarm_details += [f"{row['id']}: \"{c.sentence[:90]}\" ({c.by}: {'; '.join(c.problems)[:120]})"
                              for c in report.failures]
        elif row["kind"] != "clean" and not o["ok"]:
            misses.append(row["id"])
    planted = [x for k, v in by_kind.items() if k != "clean" for x in v]
    caught_rate = sum(planted) / len(planted) if planted else 0.0
    clean = by_kind.get("clean", [])
    false_alarm = (len(clean) - sum(clean)) / len(clean) if clean else 0.0
    echo(f"{title}: {len(outcomes)} drafts ({len(clean)} clean, {len(planted)} with one planted error), "
         f"checked by {', '.join(sorted(judge_models))}" + (f" in {elapsed:.1f}s" if elapsed is not None else "")
         + (f", claim call failed on {judge_errors}" if judge_errors else ""))
    for kind in ("wrong_number", "wrong_source", "uncited_claim"):
        v = by_kind.get(kind, [])
        if v:
            echo(f"  {kind:<14} caught {sum(v)}/{len(v)} ({sum(v) / len(v):.0%})")
    echo(f"  caught overall {sum(planted)}/{len(planted)} ({caught_rate:.1%}; goal >= 95%)   "
         f"false alarms {len(alarms)}/{len(clean)} clean drafts ({false_alarm:.1%}; goal <= 5%)")
    if misses:
        echo("  missed: " + ", ".join(misses))
    if alarms:
        echo("  false alarms: " + ", ".join(alarms))
        if not quiet:
            for line in alarm_details:
                echo(f"    {line}")
    return {"drafts": len(outcomes), "planted": len(planted), "caught": round(caught_rate, 4),
            "false_alarms": round(false_alarm, 4), "by_kind": {k: round(sum(v) / len(v), 4) for k, v in by_kind.items()
                                                               if k != "clean"},
            "checked_by": sorted(judge_models), "judge_errors": judge_errors, "missed": misses, "alarms": alarms}


def run_independent(rows: list[dict], *, echo=print, vectors: dict[str, dict] | None = None) -> dict:
    """The rules alone (no LLM call) on clean drafts they were not tuned on, and with `vectors` (row
    id -> support vectors) the support check after them. Those drafts cite per paragraph, not per
    sentence as the Writer is told to, so their uncited sentences fail the "no uncited number / no
    copied source / no restated note" rules by convention, not by error: the false-alarm figure is
    over the sentences that carry a marker (the number and wrong-source checks)."""
    from agents.editor import check_rules, check_support

    cited = flagged = drafts_failed = uncited = uncited_support = 0
    drafts_flagged: list[str] = []
    details: list[str] = []
    for row in rows:
        notes = notes_for(row)
        results = check_rules(row["body"], notes)
        if vectors is not None:
            results = check_support(results, notes, vectors[row["id"]])
        drafts_failed += any(c.status == "unsupported" for c in results)
        bad = [c for c in results if c.cites and c.status == "unsupported"]
        cited += sum(1 for c in results if c.cites)
        uncited += sum(1 for c in results if not c.cites)
        uncited_support += sum(1 for c in results if not c.cites and c.by == "support")
        flagged += len(bad)
        if bad:
            drafts_flagged.append(row["id"])
            details += [f"{row['id']}: \"{c.sentence[:90]}\" ({c.by}: {'; '.join(c.problems)[:120]})" for c in bad]
    n = len(rows)
    echo(f"independent clean drafts (evals/judge/drafts with no defect, cited per paragraph), "
         f"{'rules + support check' if vectors is not None else 'rules only'}: {n} drafts; "
         f"cited sentences flagged {flagged}/{cited} ({flagged / max(cited, 1):.1%}), drafts with a flagged cited "
         f"sentence {len(drafts_flagged)}/{n} ({len(drafts_flagged) / max(n, 1):.1%}); drafts failing on their "
         f"uncited sentences too (per-sentence convention) {drafts_failed}/{n}"
         + (f"; uncited sentences the support check calls restatements {uncited_support}/{uncited}"
            if vectors is not None else ""))
    for line in details:
        echo(f"    {line}")
    return {"drafts": n, "cited_sentences": cited, "cited_flagged": flagged,
            "drafts_with_cited_flag": round(len(drafts_flagged) / max(n, 1), 4), "drafts_failing": drafts_failed,
            "flagged": drafts_flagged,
            **({"uncited_sentences": uncited, "uncited_support_flagged": uncited_support} if vectors is not None else {})}


async def run_live(gateway, *, topics: list[str], use_judge: bool, support: bool = False, echo=print) -> dict:
    """research -> outline -> draft -> citation check for each topic, with the configured routes."""
    from agents import editor, researcher, writer
    from agents.models import RetrievalResult
    from config import get_settings
    from tools import retrieval
    from tools.embeddings import vectors_for
    from tools.ingest import ingest_paths, source_path_for

    s = get_settings()
    report = await ingest_paths([CORPUS])
    echo(f"corpus: {report.summary()}")
    prefix = source_path_for(CORPUS).rstrip("/") + "/"
    rates, rows = [], []
    for i, topic in enumerate(topics, 1):
        t = time.perf_counter()
        plan = await researcher.plan_research(gateway, topic=topic, urls=[], n=s.research_subquestions,
                                              thread_id=None, max_tokens=s.plan_max_tokens)
        found = await retrieval.get_retriever().search_many(researcher.search_queries(plan), k=s.retrieval_top_k,
                                                            filters={"source_prefix": prefix})
        result = RetrievalResult.model_validate(found.model_dump())
        sources = researcher.select_sources(result, [], top_k=s.retrieval_top_k)
        if not sources:
            echo(f"{i:>2}. {topic[:70]}: ungrounded ({researcher.ungrounded_reason(plan, result, [])[:80]})")
            rows.append({"topic": topic, "support_rate": None, "grounded": False})
            continue
        notes = researcher.notes_from_sources(sources)
        outline = await writer.write_outline(gateway, topic=topic, notes=notes, version=1, thread_id=None,
                                             max_tokens=s.outline_max_tokens)
        draft = await writer.write_draft(gateway, topic=topic, notes=notes, previous=None, feedback=None,
                                         reason="first", thread_id=None, max_tokens=s.writer_max_tokens, outline=outline)
        vectors = await vectors_for(editor.support_texts(draft.body, notes)) if support else None
        check = await editor.check_citations(gateway, body=draft.body, notes=notes, draft_version=1, thread_id=None,
                                             use_judge=use_judge, max_tokens=s.claims_max_tokens,
                                             support_vectors=vectors)
        rate = check.support_rate
        if rate is not None:
            rates.append(rate)
        rows.append({"topic": topic, "support_rate": rate, "claims": check.checked, "passed": check.passed,
                     "checked_by": check.checked_by, "seconds": round(time.perf_counter() - t, 1)})
        echo(f"{i:>2}. {topic[:70]}: support {'-' if rate is None else f'{rate:.0%}'} "
             f"({check.supported}/{check.checked} cited claims, {'passed' if check.passed else 'failed'}, "
             f"{check.checked_by}, {time.perf_counter() - t:.0f}s)")
        for c in check.failures:  # why the post would go back to the Writer
            echo(f"      flagged ({c.by}): \"{c.sentence[:100]}\" {'; '.join(c.problems)[:140]}")
    overall = sum(rates) / len(rates) if rates else None
    echo(f"live: {len(topics)} posts, support rate {'-' if overall is None else f'{overall:.1%}'} "
         f"(mean over {len(rates)} posts with cited claims)")
    return {"posts": len(topics), "support_rate": None if overall is None else round(overall, 4),
            "per_post": rows}


async def run(*, live: int, planted: bool, rules_only: bool, support: bool = True, echo=print,
              planted_file: Path | None = None) -> dict:
    """`planted_file`: another planted set than planted.jsonl (scored whole: the tuning/reported
    halves are planted.jsonl's)."""
    from config import get_settings
    from evals.faithfulness.split import planted_halves
    from tools.llm import get_gateway

    s = get_settings()
    gateway = get_gateway()
    support = support and s.support_check
    out: dict = {"claim_check": ("rules+support" if support else "rules") + ("" if rules_only else "+judge")}
    if planted:
        other = planted_file is not None and Path(planted_file).resolve() != PLANTED
        rows = load_planted(Path(planted_file)) if other else None
        out["planted"] = await run_planted(gateway, use_judge=not rules_only, max_tokens=s.claims_max_tokens, echo=echo,
                                           support=support, rows=rows, halves=None if other else planted_halves(),
                                           title=f"planted-error set {Path(planted_file).name}" if other
                                           else "planted-error set")
        if other:
            out["planted"]["file"] = str(planted_file)
        independent = load_independent_clean()
        vectors = await _timed_vectors(independent, echo=echo) if support else None
        out["independent_clean" if support else "independent_clean_rules"] = run_independent(
            independent, echo=echo, vectors=vectors)
    if live:
        topics = [json.loads(line)["query"] for line in TOPICS.read_text().splitlines() if line.strip()][:live]
        out["live"] = await run_live(gateway, topics=topics, use_judge=not rules_only, support=support, echo=echo)
    return out


async def run_with_llm(**kw) -> dict:
    from config import get_settings
    from tools.local_llm import local_llm_if_needed

    if kw.get("rules_only") and not kw.get("live"):
        return await run(**kw)  # no LLM call at all
    with local_llm_if_needed(get_settings()):
        return await run(**kw)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--live-topics", type=int, default=20)
    ap.add_argument("--no-live", action="store_true")
    ap.add_argument("--no-planted", action="store_true")
    ap.add_argument("--rules-only", action="store_true")
    ap.add_argument("--no-support", action="store_true")
    ap.add_argument("--planted-file", type=Path, default=None)
    a = ap.parse_args(argv)
    out = asyncio.run(run_with_llm(live=0 if a.no_live else a.live_topics, planted=not a.no_planted,
                                   rules_only=a.rules_only, support=not a.no_support, planted_file=a.planted_file))
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
