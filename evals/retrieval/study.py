"""Note-ranking ideas for topic-style requests, measured side by side without overfitting (issue 14).

    python -m evals.retrieval.study \\
        --train evals/retrieval/queries.jsonl --train-hypotheses evals/retrieval/hypotheses-smollm2-135m.jsonl \\
        --test evals/retrieval/topics.jsonl --test-hypotheses evals/retrieval/hypotheses-topics-smollm2-135m.jsonl

Every search signal of every query is computed once (the real embedder, the real full-text SQL
over the ingested corpus), then each ranking variant is a function of those signals, so a grid
of fusion weights costs seconds. Weights are LEARNED ON THE TRAIN SET (the 52 questions) and only
then scored on the test set (the 48 topic requests); the test set also gets a 2-fold estimate
(weights learned on one half of the topics, scored on the other) so an idea that only fits these
48 shows up as a gap between the two.

Signals per (query, note), with the search vector v = norm(q + w x hypothesis) as production:
  dense     the note's rank in the chunk ranking by cosine to v (its best chunk)
  text      its rank in the full-text ranking (heading path + text, the query's words)
  mean      its rank by the mean cosine of all its chunks to v
  card      its rank by the cosine of the bare request q to the note's card: title + every heading
            (a note's "table of contents", embedded once per note)
and the variants (all over the same candidates: the notes of the dense and text top 40):
  production    RRF of dense, text, mean with k=60 (what `Retriever.retrieve` does; checked equal)
  weighted      RRF with per-arm weights and k learned on the train set
  +card         production + the card arm (weight learned on train)
  rerank-card   production's top 3 re-ordered by RRF with the card ranking (weight learned on train)
  +query-arm    production + the bare request's dense ranking (no HyDE)
  prf           Rocchio pseudo-relevance feedback on the dense and mean arms
  best-n        a note ranked by the mean cosine of its best n chunks (n = 2, 3), beside or instead of
                the mean of all its chunks
  +hyp-text     production + a full-text ranking of the HyDE hypothesis's words (query2doc-style)
and query families: as is, number words -> digits, heading-weighted full text, the request
frame ("Write a post on", "Explain how") stripped before embedding and full-text search, and
(--test-plans) the topic's HyDE vector built from the mean of its hypothesis and its research
plan's hypothesis sentences (the HyDE paper averages several hypotheses; the plan's come free).

The last line printed is one JSON object.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evals.retrieval.run import DEFAULT_CORPUS, load_queries, note_of, score, summarise

HERE = Path(__file__).resolve().parent
CANDIDATES = 40
K = 5


@dataclass
class QuerySignals:
    id: str
    expected: list[str]
    query: str
    dense: list[str]  # notes, best first
    text: list[str]
    mean: dict[str, float]  # note -> mean chunk cosine to the search vector
    card: dict[str, float]  # note -> cosine of the bare request to the note's card
    best_cos: dict[str, float] = field(default_factory=dict)
    query_dense: list[str] = field(default_factory=list)  # notes by cosine to the bare request (no HyDE)
    # pseudo-relevance feedback (Rocchio): (m, beta) -> (dense ranking, per-note mean cosine) for the
    # search vector moved towards the mean of its own top m chunks, norm(v + beta x mean)
    prf: dict[tuple[int, float], tuple[list[str], dict[str, float]]] = field(default_factory=dict)
    # note -> mean cosine of its best n chunks to the search vector (per-note aggregation by the
    # best few chunks instead of all: a long note is not diluted by its off-topic sections)
    best_n: dict[int, dict[str, float]] = field(default_factory=dict)
    hyp_text: list[str] = field(default_factory=list)  # full-text ranking of the HyDE hypothesis's words

    @property
    def candidates(self) -> list[str]:
        return list(dict.fromkeys(self.dense + self.text))


def card_text(title: str, headings: list[str]) -> str:
    """A note's card: its title and its headings in order (what a reader scans first)."""
    return ". ".join([title] + [h for h in headings if h and h != title])


def _ranked(values: dict[str, float], among: list[str]) -> list[str]:
    return sorted(among, key=lambda d: (-values.get(d, -1.0), among.index(d)))


def rrf(rankings: list[tuple[list[str], float]], k: float) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ranking, w in rankings:
        if not w:
            continue
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
    return scores


def rank_notes(sig: QuerySignals, *, w_dense=1.0, w_text=1.0, w_mean=1.0, w_card=0.0, k=60.0,
               rerank_top=0, w_rerank=0.0, w_query=0.0, prf: tuple[int, float] | None = None,
               best_n: int = 0, w_best_n: float = 0.0, w_hyp_text: float = 0.0) -> list[str]:
    cands = sig.candidates
    dense, mean = sig.prf[prf] if prf else (sig.dense, sig.mean)
    arms = [([d for d in dense if d in cands], w_dense), (sig.text, w_text), (_ranked(mean, cands), w_mean)]
    if best_n and w_best_n:
        arms.append((_ranked(sig.best_n[best_n], cands), w_best_n))
    if w_hyp_text:
        arms.append(([d for d in sig.hyp_text if d in cands], w_hyp_text))
    if w_card:
        arms.append((_ranked(sig.card, cands), w_card))
    if w_query:
        arms.append(([d for d in sig.query_dense if d in cands], w_query))
    scores = rrf(arms, k)
    order = sorted((d for d in scores if d in cands), key=lambda d: (-scores[d], cands.index(d)))
    if rerank_top and w_rerank:
        head, tail = order[:rerank_top], order[rerank_top:]
        re = rrf([(head, 1.0), (_ranked(sig.card, head), w_rerank)], k=1.0)
        head = sorted(head, key=lambda d: (-re[d], head.index(d)))
        order = head + tail
    return order


def evaluate(sigs: list[QuerySignals], **params) -> dict:
    rows = []
    for s in sigs:
        ranked = rank_notes(s, **params)
        rows.append({"id": s.id, **score(ranked, s.expected, K)})
    out = summarise(rows)
    out["misses"] = [r["id"] for r in rows if not r["top1"]]
    return out


def _key(m: dict) -> tuple:
    return (round(m["top1"], 6), round(m["mrr"], 6), round(m["hit@k"], 6))


GRIDS = {
    "weighted": [dict(w_dense=a, w_text=b, w_mean=c, k=k) for a, b, c, k in itertools.product(
        (0.5, 1.0, 1.5, 2.0), (0.0, 0.5, 1.0, 1.5, 2.0), (0.0, 0.5, 1.0, 1.5, 2.0), (10.0, 30.0, 60.0))],
    "+card": [dict(w_card=c, k=k) for c, k in itertools.product((0.25, 0.5, 0.75, 1.0, 1.5, 2.0), (10.0, 30.0, 60.0))],
    "rerank-card": [dict(rerank_top=n, w_rerank=w) for n, w in itertools.product((2, 3, 5), (0.25, 0.5, 1.0, 2.0))],
    "+query-arm": [dict(w_query=w) for w in (0.25, 0.5, 0.75, 1.0, 1.5)],
    # Rocchio pseudo-relevance feedback on the dense and mean arms (tried 2026-12-01, issue 14 third
    # pass, from the textbook method, not from a miss): the gentlest settings first
    "prf": [dict(prf=(m, b)) for b in (0.25, 0.5, 1.0) for m in (1, 3, 5)],
    # issue 14 fourth pass (2026-12-01), both from the method, not from a miss:
    # a note's score from its best n chunks' mean cosine, replacing the mean-of-all arm or beside it
    "best-n": [dict(best_n=n, w_best_n=w, w_mean=m) for m in (0.0, 1.0) for n in (2, 3) for w in (0.5, 1.0, 1.5)],
    # query2doc-style: the hypothesis's words as a second full-text arm (the text arm searches the
    # request's words only; the hypothesis brings the notes' vocabulary to the dense arm alone)
    "+hyp-text": [dict(w_hyp_text=w) for w in (0.25, 0.5, 0.75, 1.0, 1.5)],
}
PRF_GRID = [g["prf"] for g in GRIDS["prf"]]
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
                     "ninety": "90", "hundred": "100", "thousand": "1000"})


def digits_for_number_words(text: str) -> str:
    """'Eight heads instead of thirty-two' -> '8 heads instead of 32' (query normalisation)."""
    import re

    def one(m):
        parts = m.group(0).lower().split("-")
        if all(p in NUMBER_WORDS for p in parts):
            return str(sum(int(NUMBER_WORDS[p]) for p in parts))
        return m.group(0)
    return re.sub(r"\b[A-Za-z]+(?:-[A-Za-z]+)?\b", one, text)


# The frame a post request is wrapped in ("Write a post on X", "Explain how X"): words that say
# what to do with the topic, not what it is. Linear-time: anchored alternation, no nested repeats.
_REQUEST_FRAME = None


def strip_request_frame(text: str) -> str:
    """'Write a post on adapter fine-tuning: ...' -> 'adapter fine-tuning: ...' (query cleaning)."""
    import re

    global _REQUEST_FRAME
    if _REQUEST_FRAME is None:
        _REQUEST_FRAME = re.compile(
            r"^\s*(?:(?:please\s+)?(?:write|draft|do)\s+(?:me\s+)?(?:a\s+|an\s+)?(?:(?:blog\s+)?post|article|piece)?"
            r"\s*(?:on|about|explaining|covering)?|(?:a\s+)?(?:blog\s+)?post\s+(?:on|about)|explain(?:\s+how)?)\s+",
            re.IGNORECASE)
    out = _REQUEST_FRAME.sub("", text, count=1).strip()
    return out or text




def learn(sigs: list[QuerySignals], grid: list[dict]) -> tuple[dict, dict]:
    """The grid point best on `sigs` (top-1, then MRR, then hit@5); ties: the first in grid order
    (grids list the gentlest settings first)."""
    best, best_m = None, None
    for params in grid:
        m = evaluate(sigs, **params)
        if best_m is None or _key(m) > _key(best_m):
            best, best_m = params, m
    return best, best_m


def two_fold(sigs: list[QuerySignals], grid: list[dict]) -> dict:
    """Weights learned on half the set, scored on the other half, both ways: a held-out estimate."""
    halves = [sigs[0::2], sigs[1::2]]
    rows_top1, rows_mrr, n = 0.0, 0.0, 0
    for i in (0, 1):
        params, _ = learn(halves[i], grid)
        m = evaluate(halves[1 - i], **params)
        rows_top1 += m["top1"] * m["n"]
        rows_mrr += m["mrr"] * m["n"]
        n += m["n"]
    return {"top1": rows_top1 / n, "mrr": rows_mrr / n}


async def signals_for(path: Path, hypotheses: Path | None, *, db, embedder, prefix: str, hyde_weight: float,
                      verify_with=None, number_digits: bool = False, weighted_text: bool = False,
                      strip_frame: bool = False, plan_hypotheses: dict[str, list[str]] | None = None,
                      ) -> list[QuerySignals]:
    """Every signal for every query of `path` (hypotheses from the cache file; a query without one
    is searched with its text alone, as production does when HyDE fails)."""
    from storage import corpus_sql
    from storage.corpus import CorpusStore

    store = CorpusStore(db)
    dim = await embedder.dimension()
    hyp: dict[str, str] = {}
    if hypotheses and hypotheses.exists():
        for line in hypotheses.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                hyp[d["query"]] = d["hypothesis"]
    docs = [d for d in await store.list_documents() if d["source_path"].startswith(prefix)]
    # All chunk vectors of the corpus (small: ~150 x 384), so dense ranking and means are exact.
    chunk_notes, chunk_vecs, headings = [], [], {}
    async def _read(conn):
        out = []
        for d in docs:
            vecs = await store.stored_vectors(conn, d["id"], embedder.name, dim)
            out.append((d, vecs))
        return out
    for d, vecs in await db.transaction(_read):
        note = note_of(d["source_path"])
        for v in vecs.values():
            chunk_notes.append(note)
            chunk_vecs.append(v)
    rows = await db.fetch(corpus_sql.HEADING_PATHS_UNDER_PREFIX, {"p": prefix + "%"})
    for r in rows:
        parts = [p.strip() for p in r["heading_path"].split(">")]
        headings.setdefault(note_of(r["source_path"]), [])
        for p in parts:
            if p not in headings[note_of(r["source_path"])]:
                headings[note_of(r["source_path"])].append(p)
    titles = {note_of(d["source_path"]): d["title"] for d in docs}
    notes = sorted(titles)
    cards = await embedder.embed([card_text(titles[n], headings.get(n, [])) for n in notes])
    card_of = dict(zip(notes, cards))
    C = np.stack(chunk_vecs)
    C = C / np.linalg.norm(C, axis=1, keepdims=True)
    out = []
    from storage.corpus import tsquery_terms

    for qy in load_queries(path):
        h = (hyp.get(qy.query) or "").strip()
        query = digits_for_number_words(qy.query) if number_digits else qy.query
        query = strip_request_frame(query) if strip_frame else query
        extra = [x for x in (plan_hypotheses or {}).get(qy.query, []) if x.strip()]
        texts = [query] + ([h] if h else []) + extra
        vecs = await embedder.embed(texts)
        # with the plan's hypotheses: their mean with the topic's (HyDE's multi-sample average)
        v = vecs[0] + hyde_weight * np.mean(vecs[1:], axis=0) if len(texts) >= 2 else vecs[0]
        v = v / np.linalg.norm(v)
        cos = C @ v
        order = np.argsort(-cos, kind="stable")[:CANDIDATES]
        dense = list(dict.fromkeys(chunk_notes[i] for i in order))
        if weighted_text:
            params = {"tsq": tsquery_terms(query), "p": prefix + "%", "limit": CANDIDATES}
            text_rows = await db.fetch(corpus_sql.HEADING_WEIGHTED_TEXT_SEARCH, params)
        else:
            text_rows = await store.text_search(query, embed_model=embedder.name, dim=dim, limit=CANDIDATES,
                                                filters={"source_prefix": prefix})
        text = list(dict.fromkeys(note_of(r["source_path"]) for r in text_rows))
        mean: dict[str, list[float]] = {}
        best: dict[str, float] = {}
        for note, c in zip(chunk_notes, cos):
            mean.setdefault(note, []).append(float(c))
            best[note] = max(best.get(note, -1.0), float(c))
        best_n = {n: {note: float(np.mean(sorted(x, reverse=True)[:n])) for note, x in mean.items()} for n in (2, 3)}
        hyp_rows = (await store.text_search(h, embed_model=embedder.name, dim=dim, limit=CANDIDATES,
                                            filters={"source_prefix": prefix}) if h else [])
        hyp_text = list(dict.fromkeys(note_of(r["source_path"]) for r in hyp_rows))
        prf = {}
        for m, beta in PRF_GRID:
            v2 = v + beta * C[np.argsort(-cos, kind="stable")[:m]].mean(axis=0)
            cos2 = C @ (v2 / np.linalg.norm(v2))
            order2 = np.argsort(-cos2, kind="stable")[:CANDIDATES]
            mean2: dict[str, list[float]] = {}
            for note, c in zip(chunk_notes, cos2):
                mean2.setdefault(note, []).append(float(c))
            prf[(m, beta)] = (list(dict.fromkeys(chunk_notes[i] for i in order2)),
                              {n: float(np.mean(x)) for n, x in mean2.items()})
        q = vecs[0] / np.linalg.norm(vecs[0])
        qcos = C @ q
        qorder = np.argsort(-qcos, kind="stable")[:CANDIDATES]
        sig = QuerySignals(qy.id, qy.expected, qy.query, dense, text, {n: float(np.mean(x)) for n, x in mean.items()},
                           {n: float(q @ card_of[n]) for n in notes}, best,
                           list(dict.fromkeys(chunk_notes[i] for i in qorder)), prf, best_n, hyp_text)
        if verify_with is not None:
            got = [note_of(c.source_path) for c in await verify_with(qy.query)]
            mine = rank_notes(sig)[:K]
            if got != mine:
                print(f"  note: {qy.id} production {got} vs study {mine}", file=sys.stderr)
        out.append(sig)
    return out


def plan_hypotheses_of(path: Path | None) -> dict[str, list[str]]:
    """topic -> the hypothesis sentences of its cached research plan (tune.py's plan cache)."""
    out: dict[str, list[str]] = {}
    if path and path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                out[d["topic"]] = [q.get("hypothesis") or "" for q in d["plan"].get("sub_questions", [])]
    return out


async def run(*, train: Path, train_hyp: Path | None, test: Path, test_hyp: Path | None, verify: bool,
              test_plans: Path | None = None, echo=print) -> dict:
    from config import get_settings
    from storage.connect import get_database
    from tools.embeddings import get_embedder
    from tools.ingest import ingest_paths, source_path_for

    s = get_settings()
    db, embedder = await get_database(), get_embedder()
    report = await ingest_paths([DEFAULT_CORPUS], db=db, embedder=embedder)
    echo(f"corpus: {report.summary()}")
    prefix = source_path_for(DEFAULT_CORPUS).rstrip("/") + "/"
    families = {"as is": {}, "number words -> digits": {"number_digits": True},
                "heading-weighted full-text": {"weighted_text": True},
                "request frame stripped": {"strip_frame": True}}
    if test_plans:  # the test set only: the train set has no cached plans (it is searched as production)
        families["plan hyps averaged in HyDE"] = {"plan_hypotheses": plan_hypotheses_of(test_plans)}
    rows = {}
    for family, opts in families.items():
        sets = {}
        for name, path, hyp in (("train", train, train_hyp), ("test", test, test_hyp)):
            verify_with = None
            if verify and not opts:
                verify_with = _production(db, embedder, hyp, prefix)
            kw = {k: v for k, v in opts.items() if name == "test" or k != "plan_hypotheses"}
            sets[name] = await signals_for(path, hyp, db=db, embedder=embedder, prefix=prefix,
                                           hyde_weight=s.retrieval_hyde_weight, verify_with=verify_with, **kw)
        tr, te = sets["train"], sets["test"]
        rows[(family, "production")] = {"params": {}, "train": evaluate(tr), "test": evaluate(te)}
        for name, grid in GRIDS.items():
            params, mtrain = learn(tr, grid)
            rows[(family, name)] = {"params": params, "train": mtrain, "test": evaluate(te, **params),
                                    "test_2fold": two_fold(te, grid)}
    echo(f"\ntrain {train.name} ({len(tr)}), test {test.name} ({len(te)}); HyDE weight {s.retrieval_hyde_weight}, "
         f"hypotheses {train_hyp.name if train_hyp else '-'} / {test_hyp.name if test_hyp else '-'}")
    echo(f"{'query / text arm':<28}{'ranking':<13}{'train top-1':>12}{'test hit@5':>11}{'top-1':>7}{'MRR':>7}"
         f"{'2-fold top-1':>14}   learned on train; test misses")
    for (family, name), r in rows.items():
        tf = r.get("test_2fold")
        tf_s = f"{tf['top1']:.3f}" if tf else "-"
        echo(f"{family:<28}{name:<13}{r['train']['top1']:>12.3f}{r['test']['hit@k']:>11.3f}{r['test']['top1']:>7.3f}"
             f"{r['test']['mrr']:>7.3f}{tf_s:>14}   {json.dumps(r['params'])}; {', '.join(r['test']['misses']) or '-'}")
    return {f"{family} | {name}": {"params": r["params"], "train_top1": round(r["train"]["top1"], 4),
                                   "test_hit@5": round(r["test"]["hit@k"], 4), "test_top1": round(r["test"]["top1"], 4),
                                   "test_mrr": round(r["test"]["mrr"], 4),
                                   "test_2fold_top1": round(r["test_2fold"]["top1"], 4) if "test_2fold" in r else None}
            for (family, name), r in rows.items()}


def _production(db, embedder, hyp: Path | None, prefix: str):
    """Retriever.retrieve with the cached hypotheses: what the production variant must equal."""
    from tools.retrieval import Retriever

    cache = {}
    if hyp and hyp.exists():
        cache = {json.loads(x)["query"]: json.loads(x)["hypothesis"] for x in hyp.read_text().splitlines() if x.strip()}

    async def gen(query, _tid):
        return cache.get(query, "")
    r = Retriever(db=db, embedder=embedder, hyde_generate=gen)

    async def run_one(query):
        return await r.retrieve(query, k=K, hyde=True, hybrid=True, filters={"source_prefix": prefix})
    return run_one


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=Path, default=HERE / "queries.jsonl")
    ap.add_argument("--train-hypotheses", type=Path, default=HERE / "hypotheses-smollm2-135m.jsonl")
    ap.add_argument("--test", type=Path, default=HERE / "topics.jsonl")
    ap.add_argument("--test-hypotheses", type=Path, default=HERE / "hypotheses-topics-smollm2-135m.jsonl")
    ap.add_argument("--verify", action="store_true", help="check the production variant against Retriever.retrieve")
    ap.add_argument("--test-plans", type=Path, default=None,
                    help="cached research plans of the test set (tune.py --plans): adds the family whose HyDE "
                         "vector averages the topic's hypothesis with the plan's")
    a = ap.parse_args(argv)

    async def _go():
        from storage.connect import close_database

        try:
            return await run(train=a.train, train_hyp=a.train_hypotheses, test=a.test, test_hyp=a.test_hypotheses,
                             verify=a.verify, test_plans=a.test_plans)
        finally:
            await close_database()

    print(json.dumps(asyncio.run(_go())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
