"""`newsroom eval-judge`: measure a judge against the labelled drafts (the `newsroom.commands` entry
point in pyproject.toml registers it with the CLI: service/ never imports evals/).

    newsroom eval-judge                                   # the configured judge, NEWSROOM_JUDGE_PROMPT
    newsroom eval-judge --route local --prompt all        # the local model, every judge prompt side by side
    ANTHROPIC_API_KEY=... newsroom eval-judge --route anthropic
    newsroom eval-judge --route recorded --check evals/judge/recorded/expected.json   # the CI gate
    newsroom eval-judge --from-langfuse QUEUE_ID          # pull annotation-queue labels into the set first
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import click

from config import get_settings

DEFAULT_RECORDED = Path(__file__).resolve().parent / "recorded" / "verdicts.jsonl"


def _prompts(values: tuple[str, ...], default: str) -> list[str]:
    from agents.prompts import available
    from evals.judge.run import check_prompt

    out: list[str] = []
    for v in values or (default,):
        for ref in v.split(","):
            ref = ref.strip()
            if ref == "all":
                out += [p for p in available() if p.startswith("editor.judge@")]
            elif ref:
                out.append(check_prompt(ref))
    return list(dict.fromkeys(out))


def _select(items, only: str | None, limit: int | None):
    if only:
        wanted = {w.strip() for w in only.split(",") if w.strip()}
        items = [i for i in items if i.id in wanted or i.defect in wanted]
        if not items:
            raise click.ClickException(f"--only {only!r} matches no labelled draft (ids or defect names)")
    return items[:limit] if limit else items


@click.command("eval-judge")
@click.option("--route", "routes", multiple=True,
              type=click.Choice(["configured", "local", "vllm", "anthropic", "recorded"]),
              help="judge(s) to measure, side by side (default: configured = the Editor's first judge route)")
@click.option("--prompt", "prompts", multiple=True,
              help="judge prompt version(s), e.g. editor.judge@1, side by side; 'all' = every version "
                   "(default: NEWSROOM_JUDGE_PROMPT; with --route recorded: every recorded version)")
@click.option("--recorded", "recorded_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"recorded verdicts for --route recorded (default {DEFAULT_RECORDED.relative_to(DEFAULT_RECORDED.parents[3])})")
@click.option("--set", "set_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="labelled drafts: a folder of *.md or one file (default evals/judge/drafts)")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="verdict cache read and appended by live runs (default NEWSROOM_DATA_DIR/judge-verdicts.jsonl)")
@click.option("--no-cache", is_flag=True, help="call the judge for every item (replies are still recorded)")
@click.option("--rescore", is_flag=True, help="never call a model: score what the cache holds for these judges")
@click.option("--model", default=None, help="override the judge's model name for a live route")
@click.option("--max-tokens", type=click.IntRange(min=16), default=None,
              help="verdict length limit (default NEWSROOM_JUDGE_MAX_TOKENS, what the Editor uses)")
@click.option("--only", default=None, help="comma-separated item ids or defect names (none, wrong_number, ...)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="first N items only")
@click.option("--concurrency", type=click.IntRange(min=1, max=32), default=None,
              help="judge calls at once (default 1 for a local server, 4 otherwise)")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=None,
              help="seconds per judge call attempt (default NEWSROOM_LLM_TIMEOUT_S; a small CPU model on busy "
                   "cores can need more; not part of the cache key: it does not change a reply)")
@click.option("--check", "check_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="compare with accepted figures (the CI gate); exit 1 on any difference")
@click.option("--write-expected", "expected_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write this run's figures as the accepted ones (for --check)")
@click.option("--details", "details_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write every item's outcome (human vs judge, reasoning) as JSONL")
@click.option("--from-langfuse", "queue_id", default=None,
              help="first pull the completed items of this Langfuse annotation queue into the set")
@click.option("--langfuse/--no-langfuse", "use_langfuse", default=True, show_default=True,
              help="with Langfuse keys set: push the set as a dataset and record each run as an experiment")
@click.option("--dataset", "dataset_name", default="newsroom-judge-calibration", show_default=True,
              help="Langfuse dataset name")
@click.option("--quiet", "-q", is_flag=True, help="no per-item progress")
def eval_judge_command(routes, prompts, recorded_path, set_path, cache_path, no_cache, rescore, model, max_tokens,
                       only, limit, concurrency, timeout_s, check_path, expected_out, details_path, queue_id,
                       use_langfuse, dataset_name, quiet) -> None:
    """Measure a judge against the labelled drafts: Pearson r per dimension and overall, MAE, agreement
    of the gate's decision (accuracy, Cohen's kappa), invalid verdicts, flag confusion, cost and time.

    The last line is one JSON object. Verdicts are cached, so a run can be re-scored without a model call."""
    from evals.judge import gate
    from evals.judge.labels import DEFAULT_SET, LabelError, load_set
    from evals.judge.run import EvalError
    from evals.judge.verdicts import VerdictStoreError

    settings = get_settings()
    if timeout_s is not None:
        settings = settings.model_copy(update={"llm_timeout_s": timeout_s})
    started = time.monotonic()
    set_path = set_path or DEFAULT_SET
    echo = (lambda *_: None) if quiet else (lambda m: click.echo(m, err=True))
    try:
        if queue_id:
            from evals.judge.langfuse_sync import LangfuseSyncError, pull_annotations

            try:
                pulled = pull_annotations(settings, queue_id, set_path if set_path.is_dir() else set_path.parent)
            except LangfuseSyncError as err:
                raise click.ClickException(str(err)) from None
            click.echo(f"pulled {len(pulled.written)} labelled draft(s) from annotation queue {queue_id}"
                       + (f"; skipped {len(pulled.skipped)}" if pulled.skipped else ""), err=True)
            for reason in pulled.skipped:
                click.echo(f"  skipped: {reason}", err=True)
        items = _select(load_set(set_path), only, limit)
        runs = _evaluate(settings, items, routes or ("configured",), prompts, recorded_path, cache_path, no_cache,
                         rescore, model, max_tokens, concurrency, echo)
    except (LabelError, EvalError, VerdictStoreError) as err:
        raise click.ClickException(str(err)) from None

    from evals.judge.run import report_text, run_summary, summary_json

    summaries = [run_summary(r) for r in runs]
    click.echo(f"labelled drafts: {len(items)} ({set_path}); human decisions: "
               f"{sum(i.human_decision == 'approve' for i in items)} approve, "
               f"{sum(i.human_decision == 'reject' for i in items)} revise (reject)")
    click.echo(report_text(runs, summaries))
    if details_path:
        _write_details(details_path, runs)
    snap = gate.snapshot(runs, summaries)
    if expected_out:
        gate.write_expected(expected_out, snap)
        click.echo(f"wrote the accepted figures to {expected_out}")
    if use_langfuse and not check_path:
        _to_langfuse(settings, items, runs, summaries, dataset_name)
    failed = False
    if check_path:
        diffs = gate.compare(json.loads(check_path.read_text(encoding="utf-8")), snap)
        if diffs:
            failed = True
            click.echo(f"JUDGE GATE FAILED: the recorded verdicts no longer give the accepted figures ({check_path}):",
                       err=True)
            for d in diffs:
                click.echo("  " + d, err=True)
            click.echo("  (an intended change: re-run with --write-expected and commit the file with it)", err=True)
        else:
            click.echo(f"judge gate: {len(runs)} recorded run(s) match {check_path}")
    out = summary_json(summaries, items=len(items), set_path=str(set_path), seconds=time.monotonic() - started)
    if check_path:
        out["gate"] = "failed" if failed else "passed"
    click.echo(json.dumps(out))
    if failed or any(r.unavailable for r in runs):  # a failed gate, or figures missing calls that failed
        sys.exit(1)


def _evaluate(settings, items, routes, prompts, recorded_path, cache_path, no_cache, rescore, model, max_tokens,
              concurrency, echo):
    from evals.judge.run import EvalError, decoding, live_target, recorded_runs_plan, run_one
    from evals.judge.verdicts import VerdictStore
    from tools.local_llm import is_on_demand_server, local_llm_if_needed

    plan = []  # (target, prompt, decoding, store)
    if "recorded" in routes:
        path = recorded_path or DEFAULT_RECORDED
        if not path.exists():
            raise EvalError(f"no recorded verdicts at {path}")
        store = VerdictStore(path)
        chosen = _prompts(prompts, settings.judge_prompt) if prompts else None
        plan += [(t, p, d, store) for t, p, d in recorded_runs_plan(store, chosen)]
    live = [r for r in routes if r != "recorded"]
    if live:
        cache = VerdictStore(cache_path or settings.data_dir / "judge-verdicts.jsonl")
        if no_cache:
            cache.records.clear()  # ask again; the new replies are still appended (and win on the next load)
        dec = decoding(max_tokens or settings.judge_max_tokens)
        for name in dict.fromkeys(live):
            target = live_target(name, settings, model=model)
            for ref in _prompts(prompts, settings.judge_prompt):
                plan.append((target, ref, dec, cache))
    needs_local = any(t.route is not None and t.route.provider == "llamacpp" and not rescore
                      and is_on_demand_server(settings, t.route.endpoint(settings)) for t, *_ in plan)

    async def go():
        from tools.llm import LLMGateway

        runs, gateways = [], {}
        try:
            for target, ref, dec, store in plan:
                gw = None
                if target.route is not None and not rescore:
                    gw = gateways.get(target.identity)
                    if gw is None:
                        gw = gateways[target.identity] = LLMGateway(settings, routes={"judge": [target.route]},
                                                                    recorder=None)
                conc = concurrency or (1 if target.route is not None and target.route.provider == "llamacpp" else 4)
                echo(f"judging {len(items)} drafts: {target.identity.label} ({target.name}), {ref}, "
                     f"max_tokens {dec.max_tokens}")
                runs.append(await run_one(items, target, ref, dec, store, settings=settings, gateway=gw,
                                          rescore=rescore, concurrency=conc, progress=echo))
        finally:
            for gw in gateways.values():
                await gw.aclose()
        return runs

    if needs_local:
        with local_llm_if_needed(settings):
            return asyncio.run(go())
    return asyncio.run(go())


def _write_details(path: Path, runs) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for run in runs:
            fh.writelines(json.dumps({
                    "run": run.label, "item": o.item.id, "defect": o.item.defect, "status": o.status,
                    "human": {**o.item.human_scores, "flag": o.item.flag, "decision": o.item.human_decision},
                    "judge": ({**o.verdict.scores, "flag": o.verdict.flag, "decision": o.judge_decision,
                               "reasoning": o.verdict.reasoning.model_dump()} if o.verdict else None),
                    "error": o.error, "raw": o.record.raw_text[:2000] if o.record else None,
                }) + "\n" for o in run.outcomes)


def _to_langfuse(settings, items, runs, summaries, dataset_name) -> None:
    from tools.tracing import tracing_configured

    if not tracing_configured(settings):
        return
    from evals.judge.langfuse_sync import LangfuseSyncError, push_dataset, record_experiment

    try:
        pushed = push_dataset(settings, items, dataset_name)
        click.echo(f"langfuse: dataset {dataset_name}: {pushed} item(s) upserted")
        for run, summary in zip(runs, summaries, strict=True):
            result = record_experiment(settings, dataset_name, run, summary)
            click.echo(f"langfuse: experiment {result['run_name']} ({result['experiment_id']})"
                       + (f" {result['url']}" if result.get("url") else ""))
    except LangfuseSyncError as err:  # the figures above stand; Langfuse is a record of them
        click.echo(f"langfuse: not recorded: {err}", err=True)
