"""Cited drafts from the local writer: plan -> retrieval -> outline -> first draft, per topic and per
draft format, with the real configured routes (the local Qwen by default), and the Editor's
deterministic citation rules on each draft.

    python -m evals.bench.cited_drafts --topics 3 --formats text,cited_json

Per draft: words, sentences, sentences carrying a [n] of a source in the notes, rule flags (the
Editor's check_rules, unchanged), the writer call's output tokens and seconds, and whether it hit its
max tokens. Per plan and outline: output tokens, seconds, hit the cap, valid. The plan, outline and
draft caps default high (--plan-tokens etc.) so the real lengths show; pass the shipped defaults to
time them as shipped. The first topic is the demo's. Last line JSON.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOPICS = HERE.parent / "retrieval" / "topics.jsonl"
CORPUS = HERE.parent / "corpus"


def draft_counts(body: str, notes) -> dict:
    """words, sentences, sentences citing a source in the notes, rule flags (check_rules as the Editor runs it)."""
    from agents.editor import check_rules, split_sentences

    known = {c.n for c in notes.citations}
    sentences = split_sentences(body)
    results = check_rules(body, notes)
    flagged = [c for c in results if c.status == "unsupported"]
    return {"words": len(body.split()), "sentences": len(sentences),
            "cited": sum(1 for s in sentences if s.cites and set(s.cites) <= known),
            "flags": len(flagged), "passed_rules": not flagged,
            "problems": [f"{c.sentence[:80]} -- {'; '.join(c.problems)[:120]}" for c in flagged]}


class CallLog:
    """The gateway's observer: every LLM attempt's role, schema, tokens and seconds."""

    def __init__(self):
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def since(self, mark: int) -> list:
        return self.events[mark:]


def _call_figures(events: list, cap: int) -> dict:
    out = sum(e.tokens_out for e in events)
    return {"tokens_in": sum(e.tokens_in for e in events), "tokens_out": out,
            "seconds": round(sum(e.latency_ms for e in events) / 1000, 1),
            "hit_cap": any(e.tokens_out >= cap for e in events), "calls": len(events)}


async def run(*, topics: list[str], formats: list[str], top_k: int, plan_tokens: int, outline_tokens: int,
              draft_tokens: int, words: int | None, echo=print) -> dict:
    from agents import researcher, writer
    from agents.models import RetrievalResult
    from config import get_settings
    from tools import retrieval
    from tools.ingest import ingest_paths, source_path_for
    from tools.llm import get_gateway

    s = get_settings()
    gateway = get_gateway()
    calls = CallLog()
    gateway.add_observer(calls)
    report = await ingest_paths([CORPUS])
    echo(f"corpus: {report.summary()}; writer {s.writer_model} ({s.local_model}), top_k {top_k}, caps plan "
         f"{plan_tokens} / outline {outline_tokens} / draft {draft_tokens}")
    prefix = source_path_for(CORPUS).rstrip("/") + "/"
    rows, drafts = [], []
    for i, topic in enumerate(topics, 1):
        row: dict = {"topic": topic}
        mark = len(calls.events)
        t = time.perf_counter()
        plan = await researcher.plan_research(gateway, topic=topic, urls=[], n=s.research_subquestions,
                                              thread_id=None, max_tokens=plan_tokens)
        row["plan"] = {**_call_figures([e for e in calls.since(mark) if e.role == "researcher"], plan_tokens),
                       "valid": plan.error is None, "sub_questions": len(plan.sub_questions)}
        found = await retrieval.get_retriever().search_many(researcher.search_queries(plan), k=top_k,
                                                            filters={"source_prefix": prefix})
        sources = researcher.select_sources(RetrievalResult.model_validate(found.model_dump()), [], top_k=top_k)
        row["research_seconds"] = round(time.perf_counter() - t, 1)
        if not sources:
            echo(f"{i:>2}. {topic[:70]}: ungrounded")
            row["grounded"] = False
            rows.append(row)
            continue
        notes = researcher.notes_from_sources(sources)
        mark = len(calls.events)
        outline = await writer.write_outline(gateway, topic=topic, notes=notes, version=1, thread_id=None,
                                             max_tokens=outline_tokens,
                                             questions=[q.question for q in plan.sub_questions])
        row["outline"] = {**_call_figures(calls.since(mark), outline_tokens), "valid": outline.error is None,
                          "sections": len(outline.sections)}
        row["drafts"] = {}
        for fmt in formats:
            mark = len(calls.events)
            kw = {"words": words} if (words and fmt == "cited_json") else {}
            if kw:
                draft = await writer.write_cited_draft(
                    gateway, messages=writer.cited_draft_messages(topic, notes, outline, **kw), notes=notes,
                    thread_id=None, max_tokens=draft_tokens, fallback_title=topic)
            else:
                draft = await writer.write_draft(gateway, topic=topic, notes=notes, previous=None, feedback=None,
                                                 reason="first", thread_id=None, max_tokens=draft_tokens,
                                                 outline=outline, draft_format=fmt)
            figures = {**_call_figures(calls.since(mark), draft_tokens), "prompt": draft.prompt,
                       **draft_counts(draft.body, notes), "dropped_citations": draft.dropped_citations}
            row["drafts"][fmt] = figures
            drafts.append({"format": fmt, **figures})
            echo(f"{i:>2}. {topic[:60]} [{fmt}]: {figures['words']} words, cited {figures['cited']}/"
                 f"{figures['sentences']} sentences, rule flags {figures['flags']}, {figures['tokens_out']} tokens "
                 f"{'(CAP) ' if figures['hit_cap'] else ''}in {figures['seconds']} s ({draft.prompt})")
            for p in figures["problems"][:6]:
                echo(f"      flagged: {p}")
            echo("      " + f"# {draft.title}\n\n{draft.body}".replace("\n", "\n      "))
        echo(f"    plan {row['plan']['tokens_out']} tokens{' (CAP)' if row['plan']['hit_cap'] else ''} "
             f"{row['plan']['seconds']} s valid={row['plan']['valid']}; outline {row['outline']['tokens_out']} tokens"
             f"{' (CAP)' if row['outline']['hit_cap'] else ''} {row['outline']['seconds']} s valid={row['outline']['valid']}")
        rows.append(row)

    def summary(items: list[dict]) -> dict:
        if not items:
            return {}
        return {"drafts": len(items), "words_mean": round(statistics.mean(d["words"] for d in items), 1),
                "cited_share": round(sum(d["cited"] for d in items) / max(1, sum(d["sentences"] for d in items)), 3),
                "flags_mean": round(statistics.mean(d["flags"] for d in items), 2),
                "passed_rules": sum(d["passed_rules"] for d in items),
                "tokens_out_max": max(d["tokens_out"] for d in items),
                "seconds_mean": round(statistics.mean(d["seconds"] for d in items), 1),
                "hit_cap": sum(d["hit_cap"] for d in items)}

    grounded = [r for r in rows if "outline" in r]
    out = {"writer": s.writer_model, "local_model": s.local_model, "topics": len(topics), "top_k": top_k,
           "formats": {f: summary([d for d in drafts if d["format"] == f]) for f in formats},
           "plan_tokens_out": [r["plan"]["tokens_out"] for r in rows],
           "plan_valid": sum(r["plan"]["valid"] for r in rows),
           "outline_tokens_out": [r["outline"]["tokens_out"] for r in grounded],
           "outline_valid": sum(r["outline"]["valid"] for r in grounded),
           "per_topic": [{k: v for k, v in r.items()} for r in rows]}
    for f, sm in out["formats"].items():
        echo(f"{f}: {sm}")
    return out


async def run_with_llm(**kw) -> dict:
    from config import get_settings
    from storage.connect import close_database
    from tools.local_llm import local_llm_if_needed

    try:
        with local_llm_if_needed(get_settings()):
            return await run(**kw)
    finally:
        await close_database()


def main(argv: list[str] | None = None) -> int:
    import argparse

    from service.cli.posts import DEFAULT_DEMO_TOPIC

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--topics", type=int, default=3, help="the demo topic, then topics from evals/retrieval/topics.jsonl")
    ap.add_argument("--formats", default="text,cited_json")
    ap.add_argument("--top-k", type=int, default=4, help="notes per post (the Qwen demo's retrieval_top_k)")
    ap.add_argument("--plan-tokens", type=int, default=400)
    ap.add_argument("--outline-tokens", type=int, default=400)
    ap.add_argument("--draft-tokens", type=int, default=900)
    ap.add_argument("--words", type=int, default=None, help="words asked of a cited_json draft")
    a = ap.parse_args(argv)
    listed = [json.loads(line)["query"] for line in TOPICS.read_text().splitlines() if line.strip()]
    topics = ([DEFAULT_DEMO_TOPIC] + listed)[:a.topics]
    out = asyncio.run(run_with_llm(topics=topics, formats=[f.strip() for f in a.formats.split(",") if f.strip()],
                                   top_k=a.top_k, plan_tokens=a.plan_tokens, outline_tokens=a.outline_tokens,
                                   draft_tokens=a.draft_tokens, words=a.words))
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
