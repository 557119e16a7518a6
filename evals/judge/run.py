"""Judge a labelled set with one or more judges and prompt versions, and score each run against the labels.

    runs = await evaluate(items, targets, prompts, store=VerdictStore(path), settings=s)
    print(report_text(runs)); print(json.dumps(summary_json(runs)))

A run is (judge, prompt version, decoding settings). Each item's verdict comes from the store when
its key is there, else from one judge call (temperature 0, the Editor's max_tokens), which is
appended to the store at once. Scoring always re-parses the stored raw reply with the Editor's own
parser and applies the Editor's exact decision function to both the judge's and the human scores.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agents import editor
from agents.editor import DIMENSIONS, EditorVerdict
from agents.prompts import load_prompt
from config import Settings
from evals.judge import metrics
from evals.judge.labels import CORPUS_DIR, LabelledDraft
from evals.judge.verdicts import Decoding, JudgeIdentity, VerdictRecord, VerdictStore, verdict_key

log = logging.getLogger("newsroom.eval_judge")

ROUTES = ("configured", "local", "vllm", "anthropic", "recorded")
GOAL_OVERALL_R = 0.86  # the curriculum's judge reached 0.861 (rubric v1.1, claude-sonnet-4-20250514)
GOAL_DIMENSION_R = 0.75
FLAGS = ("none", "confident_hallucination")
DECISIONS = ("approve", "reject")


class EvalError(RuntimeError):
    """A run that cannot start (no key, unknown prompt, nothing recorded): the reason, for the user."""


# --- judges ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JudgeTarget:
    name: str  # which --route chose it
    identity: JudgeIdentity
    route: object | None = None  # tools.llm.Route; None = recorded verdicts only


def _weights_of(settings: Settings, endpoint: str) -> str | None:
    """The GGUF served by the on-demand local server (its alias names the role, not the weights)."""
    from tools.local_llm import LocalLLMError, gguf_path, is_on_demand_server

    if not is_on_demand_server(settings, endpoint):
        return None
    try:
        path = gguf_path(settings.local_model, settings.model_cache_dir)
    except LocalLLMError:
        return None
    return f"{path.name} ({path.stat().st_size} bytes)"


ON_DEMAND_ENDPOINT = "on-demand local server"


def _target(name: str, route, settings: Settings) -> JudgeTarget:
    endpoint = route.endpoint(settings)
    weights = _weights_of(settings, endpoint) if route.provider == "llamacpp" else None
    # The on-demand server is known by its weights, not its port (NEWSROOM_LOCAL_LLM_PORT may differ per run).
    identity = JudgeIdentity(provider=route.provider, model=route.model,
                             endpoint=ON_DEMAND_ENDPOINT if weights else endpoint, weights=weights)
    return JudgeTarget(name, identity, route)


def live_target(name: str, settings: Settings, *, model: str | None = None) -> JudgeTarget:
    """The judge a --route names, from the settings (NEWSROOM_JUDGE_*, ANTHROPIC_*)."""
    from tools.llm import Route, routes_from_settings

    if name == "configured":
        route = routes_from_settings(settings)["judge"][0]  # the Editor's first judge route
        if model:
            route = route.model_copy(update={"model": model})
    elif name == "local":
        route = Route(provider="llamacpp", base_url=settings.judge_url, model=model or settings.judge_model)
    elif name == "vllm":
        route = Route(provider="vllm", base_url=settings.judge_url, model=model or settings.judge_model)
    elif name == "anthropic":
        route = Route(provider="anthropic", model=model or settings.anthropic_judge_model)
    else:
        raise EvalError(f"unknown route {name!r}; choose from {', '.join(ROUTES)}")
    if route.provider == "anthropic" and not route.key(settings):
        raise EvalError("the Anthropic judge needs a key: ANTHROPIC_API_KEY=... newsroom eval-judge --route anthropic")
    return _target(name, route, settings)


# --- prompts and decoding ----------------------------------------------------------------------

def prompt_sha(ref: str) -> str:
    p = load_prompt(ref)
    return hashlib.sha256(f"{p.ref}\n{p.system}\n{p.user}".encode()).hexdigest()


def check_prompt(ref: str) -> str:
    """A judge prompt reference, checked: name@version of an existing editor.judge template."""
    from agents.prompts import PromptNotFound

    if "@" not in ref or not ref.startswith("editor.judge@"):
        raise EvalError(f"--prompt {ref!r}: name a judge prompt version, e.g. editor.judge@1")
    try:
        load_prompt(ref)
    except PromptNotFound as err:
        raise EvalError(f"--prompt {ref!r}: {err}") from None
    return ref


def decoding(max_tokens: int) -> Decoding:
    schema = json.dumps(EditorVerdict.model_json_schema(), sort_keys=True)
    return Decoding(temperature=0.0, max_tokens=max_tokens, schema_sha=hashlib.sha256(schema.encode()).hexdigest()[:16])


# --- one run -----------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One item in one run: the human side and what the judge said (None = no verdict recorded)."""

    item: LabelledDraft
    record: VerdictRecord | None
    verdict: EditorVerdict | None = None
    error: str | None = None  # why the reply is not a valid verdict

    @property
    def status(self) -> str:
        if self.record is None:
            return "missing"
        return "valid" if self.verdict is not None else "invalid"

    @property
    def judge_decision(self) -> str:
        """approve | reject from the exact decision function; invalid / missing otherwise."""
        if self.verdict is None:
            return self.status
        v = self.verdict
        return editor.approve_or_revise(v.technical_accuracy, v.calibration, v.mechanistic_depth,
                                        v.audience_calibration, v.flag)


@dataclass
class Run:
    target: JudgeTarget
    prompt_ref: str
    decoding: Decoding
    outcomes: list[Outcome] = field(default_factory=list)
    calls: int = 0  # judge calls made by this run (the rest came from the store)
    cache_hits: int = 0
    unavailable: list[str] = field(default_factory=list)  # items whose call failed (not recorded)
    wall_s: float = 0.0
    cost_usd_this_run: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.target.identity.label} {self.prompt_ref}"


def score_outcomes(outcomes: list[Outcome]) -> None:
    """Parse each recorded reply with the Editor's parser (the same code path as a live verdict)."""
    from tools.llm import LLMOutputInvalid

    for o in outcomes:
        o.verdict, o.error = None, None
        if o.record is None:
            continue
        try:
            o.verdict = editor.parse_verdict(o.record.raw_text)
        except LLMOutputInvalid as err:
            o.error = str(err)[:300]


async def run_one(items: Sequence[LabelledDraft], target: JudgeTarget, prompt_ref: str, dec: Decoding,
                  store: VerdictStore, *, settings: Settings, gateway=None, rescore: bool = False,
                  concurrency: int = 1, corpus: Path = CORPUS_DIR,
                  progress: Callable[[str], None] | None = None) -> Run:
    """Verdicts for every item (store first, then the judge), scored. A failed call is reported, not stored."""
    run = Run(target, prompt_ref, dec)
    p_sha = prompt_sha(prompt_ref)
    started = time.monotonic()
    sem = asyncio.Semaphore(max(1, concurrency))
    done = 0

    async def one(item: LabelledDraft) -> Outcome:
        nonlocal done
        inp = item.judge_input(corpus)
        i_sha = item.input_sha(corpus)
        key = verdict_key(item_id=item.id, input_sha=i_sha, prompt_ref=prompt_ref, prompt_sha=p_sha,
                          judge=target.identity, decoding=dec)
        rec = store.get(key)
        source = "stored"
        if rec is not None:
            run.cache_hits += 1
        elif target.route is not None and not rescore:
            async with sem:
                rec = await _call_judge(gateway, item, inp, key=key, i_sha=i_sha, prompt_ref=prompt_ref,
                                        p_sha=p_sha, target=target, dec=dec, run=run)
            source = "judged" if rec is not None else "call failed"
            if rec is not None:
                store.add(rec)
        else:
            source = "no recorded verdict"
        done += 1
        if progress is not None:
            progress(f"[{done}/{len(items)}] {run.label}: {item.id} ({source}"
                     + (f", {rec.latency_ms / 1000:.1f}s" if rec is not None and source == "judged" else "") + ")")
        return Outcome(item, rec)

    run.outcomes = list(await asyncio.gather(*(one(i) for i in items)))
    run.wall_s = time.monotonic() - started
    score_outcomes(run.outcomes)
    return run


async def _call_judge(gateway, item, inp, *, key, i_sha, prompt_ref, p_sha, target, dec, run) -> VerdictRecord | None:
    from tools.llm import LLMOutputInvalid, LLMUnavailable

    messages = editor.judge_messages(inp["topic"], inp["title"], inp["body"], inp["notes"], prompt_ref=prompt_ref)
    run.calls += 1
    try:
        _verdict, result = await gateway.complete_json("judge", messages, EditorVerdict,
                                                       max_tokens=dec.max_tokens, temperature=dec.temperature)
        raw = result.text
    except LLMOutputInvalid as err:  # a reply that does not validate is a verdict to record, not a failure
        result, raw = err.result, err.raw_text
    except LLMUnavailable as err:
        run.unavailable.append(f"{item.id}: {str(err)[:300]}")
        return None
    run.cost_usd_this_run += result.cost_usd
    return VerdictRecord(key=key, item_id=item.id, input_sha=i_sha, prompt_ref=prompt_ref, prompt_sha=p_sha,
                         judge=target.identity, decoding=dec, raw_text=raw, served_model=result.model,
                         tokens_in=result.tokens_in, tokens_out=result.tokens_out, cost_usd=result.cost_usd,
                         latency_ms=result.latency_ms)


def recorded_runs_plan(store: VerdictStore, prompts: Sequence[str] | None) -> list[tuple[JudgeTarget, str, Decoding]]:
    """Every (judge, prompt, decoding) recorded in the store, optionally only the named prompts."""
    plan = []
    for judge in store.judges():
        for ref in store.prompts_of(judge):
            if prompts and ref not in prompts:
                continue
            for dec in store.decodings_of(judge, ref):
                plan.append((JudgeTarget("recorded", judge, None), ref, dec))
    if not plan:
        where = store.path or "(no file)"
        raise EvalError(f"no recorded verdicts in {where}" + (f" for {', '.join(prompts)}" if prompts else ""))
    return plan


# --- scoring -----------------------------------------------------------------------------------

def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def run_summary(run: Run) -> dict:
    """The figures of one run (the JSON the report and the gate are made of)."""
    outs = run.outcomes
    valid = [o for o in outs if o.verdict is not None]
    r, mae, bias = {}, {}, {}
    for d in DIMENSIONS:
        h = [o.item.human_scores[d] for o in valid]
        j = [getattr(o.verdict, d) for o in valid]
        r[d] = _r(metrics.pearson(j, h))
        mae[d] = _r(metrics.mae(j, h))
        bias[d] = _r(sum(j) / len(j) - sum(h) / len(h)) if valid else None
    r["overall"] = _r(metrics.pearson([o.verdict.mean for o in valid], [o.item.human_mean for o in valid]))
    mae["overall"] = _r(sum(mae[d] for d in DIMENSIONS) / len(DIMENSIONS)) if valid else None
    human_dec = [o.item.human_decision for o in valid]
    judge_dec = [o.judge_decision for o in valid]
    all_human = [o.item.human_decision for o in outs if o.status != "missing"]
    all_judge = [o.judge_decision for o in outs if o.status != "missing"]
    flag_p, flag_rec = metrics.precision_recall([o.item.flag for o in valid], [o.verdict.flag for o in valid],
                                                "confident_hallucination")
    recorded = [o.record for o in outs if o.record is not None]
    latencies = [rec.latency_ms for rec in recorded]
    judged = len(outs) - sum(o.status == "missing" for o in outs)
    dims_ok = all(r[d] is not None and r[d] >= GOAL_DIMENSION_R for d in DIMENSIONS)
    by_defect: dict[str, dict] = {}
    for o in (o for o in outs if o.status != "missing"):  # drafts this judge was asked about
        b = by_defect.setdefault(o.item.defect, {"n": 0, "human_reject": 0, "judge_reject": 0, "judge_invalid": 0,
                                                 "judge_flag": 0})
        b["n"] += 1
        b["human_reject"] += o.item.human_decision == "reject"
        b["judge_reject"] += o.judge_decision == "reject"
        b["judge_invalid"] += o.status == "invalid"
        b["judge_flag"] += o.verdict is not None and o.verdict.flag == "confident_hallucination"
    return {
        "judge": run.target.identity.label, "route": run.target.name, "provider": run.target.identity.provider,
        "model": run.target.identity.model, "weights": run.target.identity.weights, "prompt": run.prompt_ref,
        "max_tokens": run.decoding.max_tokens, "temperature": run.decoding.temperature,
        "items": len(outs), "valid": len(valid), "invalid": sum(o.status == "invalid" for o in outs),
        "missing": sum(o.status == "missing" for o in outs),
        "invalid_rate": _r(sum(o.status == "invalid" for o in outs) / judged) if judged else None,
        "r": r, "mae": mae, "bias": bias,
        "decision": {
            "accuracy": _r(metrics.accuracy(human_dec, judge_dec)),
            "kappa": _r(metrics.cohen_kappa(human_dec, judge_dec)),
            # an invalid verdict never approves (the Editor escalates it): counted as a disagreement here
            "accuracy_all": _r(metrics.accuracy(all_human, all_judge)),
            "confusion": metrics.confusion(human_dec, judge_dec, DECISIONS),
            # over the drafts with a recorded verdict (valid or not), so the two counts are comparable
            "human_approve": all_human.count("approve"),
            "judge_approve": all_judge.count("approve"),
        },
        "flag": {"confusion": metrics.confusion([o.item.flag for o in valid], [o.verdict.flag for o in valid], FLAGS),
                 "precision": _r(flag_p), "recall": _r(flag_rec)},
        "by_defect": by_defect,
        "cost_usd": round(sum(rec.cost_usd for rec in recorded), 6),
        "cost_usd_this_run": round(run.cost_usd_this_run, 6),
        "tokens_in": sum(rec.tokens_in for rec in recorded), "tokens_out": sum(rec.tokens_out for rec in recorded),
        "judge_seconds": round(sum(latencies) / 1000, 1),
        "latency_ms_p50": metrics.percentile(latencies, 50), "latency_ms_p95": metrics.percentile(latencies, 95),
        "calls": run.calls, "cache_hits": run.cache_hits, "unavailable": len(run.unavailable),
        "wall_s": round(run.wall_s, 1),
        "goal_met": bool(r["overall"] is not None and r["overall"] >= GOAL_OVERALL_R and dims_ok),
    }


def item_table(run: Run) -> dict[str, dict]:
    """Per item: the human and judge decisions and whether the verdict parsed (what the gate pins)."""
    out = {}
    for o in run.outcomes:
        out[o.item.id] = {"human": o.item.human_decision, "judge": o.judge_decision, "status": o.status}
        if o.verdict is not None:
            out[o.item.id]["scores"] = [getattr(o.verdict, d) for d in DIMENSIONS] + [o.verdict.flag]
    return out


# --- the report --------------------------------------------------------------------------------

def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def report_text(runs: Sequence[Run], summaries: Sequence[dict]) -> str:
    """The runs side by side, one column each."""
    cols = [f"{s['judge']} {s['prompt']}" for s in summaries]
    rows: list[tuple[str, list[str]]] = []

    def row(name, values):
        rows.append((name, [_fmt(v) for v in values]))

    row("drafts judged (valid/items)", [f"{s['valid']}/{s['items']}" for s in summaries])
    row("invalid-verdict rate", [s["invalid_rate"] for s in summaries])
    row("missing (no recorded verdict)", [s["missing"] for s in summaries])
    for d in DIMENSIONS:
        row(f"r {d}", [s["r"][d] for s in summaries])
    row("r overall (per-draft mean)", [s["r"]["overall"] for s in summaries])
    for d in DIMENSIONS:
        row(f"MAE {d}", [s["mae"][d] for s in summaries])
    row("MAE overall", [s["mae"]["overall"] for s in summaries])
    for d in DIMENSIONS:
        row(f"bias {d} (judge - human)", [s["bias"][d] for s in summaries])
    row("decision accuracy (valid)", [s["decision"]["accuracy"] for s in summaries])
    row("decision kappa (valid)", [s["decision"]["kappa"] for s in summaries])
    row("decision accuracy (invalid = wrong)", [s["decision"]["accuracy_all"] for s in summaries])
    row("approvals human / judge", [f"{s['decision']['human_approve']} / {s['decision']['judge_approve']}"
                                    for s in summaries])
    for t in DECISIONS:
        row(f"  human {t} -> judge approve/reject",
            [f"{s['decision']['confusion'][t]['approve']} / {s['decision']['confusion'][t]['reject']}" for s in summaries])
    for t in FLAGS:
        row(f"  flag human {t} -> judge none/CH",
            [f"{s['flag']['confusion'][t]['none']} / {s['flag']['confusion'][t]['confident_hallucination']}"
             for s in summaries])
    row("flag precision / recall", [f"{_fmt(s['flag']['precision'])} / {_fmt(s['flag']['recall'])}" for s in summaries])
    row("cost of the verdicts (USD)", [f"{s['cost_usd']:.4f}" for s in summaries])
    row("cost of this run (USD)", [f"{s['cost_usd_this_run']:.4f}" for s in summaries])
    row("tokens in / out", [f"{s['tokens_in']} / {s['tokens_out']}" for s in summaries])
    row("judge time (s, recorded calls)", [f"{s['judge_seconds']:.1f}" for s in summaries])
    row("latency p50 / p95 (ms)", [f"{_fmt(s['latency_ms_p50'])} / {_fmt(s['latency_ms_p95'])}" for s in summaries])
    row("calls this run / from store", [f"{s['calls']} / {s['cache_hits']}" for s in summaries])
    row("goal (r >= 0.86 overall, >= 0.75 each)", ["met" if s["goal_met"] else "missed" for s in summaries])
    width = max(len(n) for n, _ in rows)
    colw = [max(len(c), *(len(v[i]) for _, v in rows)) for i, c in enumerate(cols)]
    lines = [" " * width + "  " + "  ".join(c.ljust(w) for c, w in zip(cols, colw))]
    for name, values in rows:
        lines.append(name.ljust(width) + "  " + "  ".join(v.ljust(w) for v, w in zip(values, colw)))
    lines.append("")
    lines.append("by planted defect (items: human rejects / judge rejects / judge invalid / judge flags):")
    for s in summaries:
        parts = [f"{d} {b['n']}: {b['human_reject']}/{b['judge_reject']}/{b['judge_invalid']}/{b['judge_flag']}"
                 for d, b in s["by_defect"].items()]
        lines.append(f"  {s['judge']} {s['prompt']}: " + "; ".join(parts))
    for run in runs:
        if run.unavailable:
            lines.append(f"{run.label}: {len(run.unavailable)} call(s) failed (not recorded; run again): "
                         + run.unavailable[0])
    return "\n".join(lines)


def summary_json(summaries: Sequence[dict], *, items: int, set_path: str, seconds: float) -> dict:
    keep = ("judge", "route", "model", "weights", "prompt", "max_tokens", "items", "valid", "invalid_rate",
            "missing", "r", "mae", "decision", "flag", "cost_usd", "cost_usd_this_run", "judge_seconds",
            "latency_ms_p50", "calls", "cache_hits", "unavailable", "goal_met")
    runs = []
    for s in summaries:
        d = {k: s[k] for k in keep}
        d["decision"] = {k: v for k, v in s["decision"].items() if k != "confusion"}
        d["flag"] = {"precision": s["flag"]["precision"], "recall": s["flag"]["recall"],
                     "confusion": s["flag"]["confusion"]}
        runs.append(d)
    return {"eval": "judge", "items": items, "set": set_path, "runs": runs,
            "goal": {"overall_r": GOAL_OVERALL_R, "dimension_r": GOAL_DIMENSION_R}, "seconds": round(seconds, 1)}
