"""Judge calibration in Langfuse, through the SDK's public API (langfuse 5).

- push_dataset: the labelled set as a Langfuse dataset. Item input = what the judge grades (topic,
  title, body, notes); expected output = the human scores, flag and gate decision; metadata = the
  planted defect and the reasons. Items are upserted by a stable id, so pushing again updates them.
- record_experiment: one eval run (judge x prompt version) as a dataset run, i.e. an experiment
  (`run_experiment` on the dataset's items): per item the judge's verdict as output and item scores
  (the judge's four scores, absolute errors, decision agreement, verdict validity); run-level scores
  with Pearson r per dimension and overall, MAE, decision accuracy and kappa, invalid rate. The
  experiment's task returns the verdicts this eval already computed (or re-read from the verdict
  cache): the judge is never called a second time for Langfuse.
- pull_annotations: gate drafts labelled by people in a Langfuse annotation queue, written into the
  set as drafts (defect "unplanted"). The queue's score configs are human_technical_accuracy,
  human_calibration, human_mechanistic_depth, human_audience_calibration (numeric 1-5; the comment
  is the reason) and human_flag (categorical none | confident_hallucination). The draft and its
  research notes come from the post's trace (the human_approval span's payload and the researcher
  span's output), so the trace must have been recorded with content capture on.

The Langfuse client is the process's tracing client (tools.tracing): same keys, host and scrubbing.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.editor import DIMENSIONS
from config import Settings
from evals.judge.labels import LabelledDraft, load_set, render_draft

log = logging.getLogger("newsroom.eval_judge.langfuse")

HUMAN_PREFIX = "human_"
HUMAN_FLAG = "human_flag"
EXPERIMENT_NAME = "editor judge calibration"
_CLIPPED = re.compile(r"\.\.\. \[\d+ more chars\]$")


class LangfuseSyncError(RuntimeError):
    pass


def _client(settings: Settings):
    from tools.tracing import get_tracing, tracing_configured

    if not tracing_configured(settings):
        raise LangfuseSyncError("Langfuse is not configured: set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY "
                                "(and LANGFUSE_BASE_URL for a self-hosted Langfuse)")
    tracing = get_tracing()
    if tracing is None:
        raise LangfuseSyncError("the Langfuse client could not start (see the log)")
    return tracing.client


def dataset_item_id(dataset: str, item_id: str) -> str:
    # Langfuse item ids are unique per project across datasets: scope ours by the dataset's name.
    return f"{dataset}.{item_id}"


def push_dataset(settings: Settings, items: list[LabelledDraft], dataset: str) -> int:
    """Create the dataset if needed and upsert every labelled draft as an item. Returns the count."""
    from langfuse.api import NotFoundError

    client = _client(settings)
    try:
        try:
            client.api.datasets.get(dataset_name=dataset)
        except NotFoundError:
            client.create_dataset(
                name=dataset,
                description="Drafts labelled by people on the Editor's rubric (evals/judge/GUIDE.md); "
                            "expected output = human scores, flag and the gate's decision",
                metadata={"rubric": "v1.1", "dimensions": list(DIMENSIONS), "source": "newsroom eval-judge"})
        for item in items:
            client.create_dataset_item(
                dataset_name=dataset, id=dataset_item_id(dataset, item.id), input=item.judge_input(),
                expected_output={**item.human_scores, "flag": item.flag, "decision": item.human_decision},
                metadata={"item_id": item.id, "defect": item.defect, "planted": item.planted,
                          "reasons": item.reasons.model_dump(), "sources": item.sources, "origin": item.origin,
                          "input_sha": item.input_sha()},
                source_trace_id=item.trace_id, source_observation_id=item.observation_id)
    except LangfuseSyncError:
        raise
    except Exception as err:  # noqa: BLE001 - the SDK's HTTP errors: one message for the user
        raise LangfuseSyncError(f"pushing dataset {dataset!r}: {type(err).__name__}: {str(err)[:300]}") from None
    return len(items)


def _item_evaluations(outcome) -> list:
    from langfuse import Evaluation

    evals = [Evaluation(name="verdict_valid", value=outcome.verdict is not None, data_type="BOOLEAN",
                        comment=outcome.error)]
    if outcome.verdict is None:
        return evals
    human = outcome.item.human_scores
    for d in DIMENSIONS:
        judge = getattr(outcome.verdict, d)
        evals.append(Evaluation(name=d, value=judge, comment=getattr(outcome.verdict.reasoning, d)[:500]))
        evals.append(Evaluation(name=f"abs_error_{d}", value=abs(judge - human[d])))
    evals.append(Evaluation(name="judge_decision", value=outcome.judge_decision, data_type="CATEGORICAL"))
    evals.append(Evaluation(name="decision_agrees", value=outcome.judge_decision == outcome.item.human_decision,
                            data_type="BOOLEAN"))
    evals.append(Evaluation(name="flag_agrees", value=outcome.verdict.flag == outcome.item.flag,
                            data_type="BOOLEAN"))
    return evals


def run_scores(summary: dict) -> list[tuple[str, float]]:
    """The run-level scores of an experiment: r per dimension and overall, MAE, agreement, invalid rate."""
    out = [(f"r_{d}", summary["r"][d]) for d in (*DIMENSIONS, "overall")]
    out += [("mae_overall", summary["mae"]["overall"]), ("decision_accuracy", summary["decision"]["accuracy"]),
            ("decision_kappa", summary["decision"]["kappa"]), ("invalid_rate", summary["invalid_rate"])]
    return [(name, value) for name, value in out if value is not None]


def record_experiment(settings: Settings, dataset: str, run, summary: dict) -> dict:
    """Record one eval run as an experiment on the dataset's items; returns run name, id and URL."""
    from langfuse import Evaluation

    client = _client(settings)
    by_item = {o.item.id: o for o in run.outcomes}
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run_name = f"{run.target.identity.label} {run.prompt_ref} {stamp}"
    try:
        items = [i for i in client.get_dataset(dataset).items
                 if isinstance(i.metadata, dict) and i.metadata.get("item_id") in by_item]
    except Exception as err:  # noqa: BLE001
        raise LangfuseSyncError(f"reading dataset {dataset!r}: {type(err).__name__}: {str(err)[:300]}") from None
    if not items:
        raise LangfuseSyncError(f"dataset {dataset!r} holds none of this run's items (push it first)")

    def task(*, item, **_):
        o = by_item[item.metadata["item_id"]]
        if o.verdict is None:
            return {"status": o.status, "error": o.error, "raw": o.record.raw_text[:2000] if o.record else None}
        return {**o.verdict.model_dump(), "decision": o.judge_decision}

    def item_evaluator(*, input, output, expected_output=None, metadata=None, **_):  # noqa: A002 - SDK's names
        return _item_evaluations(by_item[metadata["item_id"]])

    def run_evaluator(*, item_results, **_):
        return [Evaluation(name=name, value=float(value), comment=f"{len(item_results)} items")
                for name, value in run_scores(summary)]

    try:
        result = client.run_experiment(
            name=EXPERIMENT_NAME, run_name=run_name, data=items, task=task, evaluators=[item_evaluator],
            run_evaluators=[run_evaluator], max_concurrency=8,
            description=f"{run.target.identity.label}, prompt {run.prompt_ref}, max_tokens {run.decoding.max_tokens}",
            metadata={"judge": run.target.identity.label, "provider": run.target.identity.provider,
                      "model": run.target.identity.model, "weights": run.target.identity.weights or "",
                      "prompt": run.prompt_ref, "max_tokens": str(run.decoding.max_tokens),
                      "temperature": str(run.decoding.temperature)})
    except Exception as err:  # noqa: BLE001
        raise LangfuseSyncError(f"recording the experiment: {type(err).__name__}: {str(err)[:300]}") from None
    return {"run_name": run_name, "experiment_id": result.experiment_id, "url": result.experiment_url,
            "items": len(result.item_results)}


# --- annotation queues -> the labelled set ---------------------------------------------------------

@dataclass
class PullReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _pages(fetch):
    """Page through a Langfuse list endpoint (page-numbered or cursor-based)."""
    page, cursor = 1, None
    while True:
        resp = fetch(page=page, cursor=cursor)
        yield from resp.data
        meta = resp.meta
        cursor = getattr(meta, "cursor", None)
        total_pages = getattr(meta, "total_pages", None)
        if total_pages is not None:
            if page >= total_pages:
                return
            page += 1
        elif not cursor:
            return


def _as_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _gate_payload(observation) -> dict | None:
    """The approval payload (draft, topic) a waiting human_approval span carries in its output."""
    out = _as_json(observation.output)
    if isinstance(out, dict):
        for value in out.get("interrupt") or []:
            value = _as_json(value)
            if isinstance(value, dict) and isinstance(value.get("draft"), dict):
                return value
    return None


def _research_notes(observations) -> str | None:
    for obs in observations:
        out = _as_json(obs.output)
        research = out.get("research") if isinstance(out, dict) else None
        if isinstance(research, dict) and isinstance(research.get("notes"), str) and research["notes"].strip():
            return research["notes"]
    return None


def _labels(scores: list) -> tuple[dict[str, int], str | None, dict[str, str]] | str:
    """Human scores, flag and reasons from one subject's annotation scores, or why they are incomplete."""
    values: dict[str, Any] = {}
    comments: dict[str, str] = {}
    for sc in sorted(scores, key=lambda s: s.timestamp):  # the latest wins if a score was redone
        values[sc.name] = sc.value
        if getattr(sc, "comment", None):
            comments[sc.name] = sc.comment
    missing = [HUMAN_PREFIX + d for d in DIMENSIONS if HUMAN_PREFIX + d not in values]
    if HUMAN_FLAG not in values:
        missing.append(HUMAN_FLAG)
    if missing:
        return f"missing score(s) {', '.join(missing)}"
    human: dict[str, int] = {}
    for d in DIMENSIONS:
        v = values[HUMAN_PREFIX + d]
        if not isinstance(v, (int, float)) or v != int(v) or not 1 <= int(v) <= 5:
            return f"{HUMAN_PREFIX + d} = {v!r} is not a whole score 1-5"
        human[d] = int(v)
    flag = str(values[HUMAN_FLAG]).strip().lower()
    if flag not in ("none", "confident_hallucination"):
        return f"{HUMAN_FLAG} = {values[HUMAN_FLAG]!r} is not none | confident_hallucination"
    reasons = {d: (comments.get(HUMAN_PREFIX + d) or f"scored {human[d]} in the annotation queue (no comment)")[:400]
               for d in DIMENSIONS}
    return human, flag, reasons


def pull_annotations(settings: Settings, queue_id: str, set_dir: Path) -> PullReport:
    """Write every completed, fully labelled item of the queue into set_dir/langfuse/ as a labelled draft."""
    client = _client(settings)
    report = PullReport()
    try:
        queue_items = [i for i in _pages(lambda page, cursor: client.api.annotation_queues.list_queue_items(
            queue_id, status="COMPLETED", page=page, limit=100))]
        scores = list(_pages(lambda page, cursor: client.api.scores.get_many(
            queue_id=queue_id, source="ANNOTATION", fields="details,subject,annotation", limit=100, cursor=cursor)))
    except Exception as err:  # noqa: BLE001
        raise LangfuseSyncError(f"reading annotation queue {queue_id!r}: {type(err).__name__}: {str(err)[:300]}") \
            from None
    by_subject: dict[tuple[str, str], list] = {}
    trace_of: dict[str, str] = {}
    for sc in scores:
        subject = getattr(sc, "subject", None)
        if subject is None:
            continue
        by_subject.setdefault((subject.kind, subject.id), []).append(sc)
        if subject.kind == "observation" and getattr(subject, "trace_id", None):
            trace_of[subject.id] = subject.trace_id
    out_dir = Path(set_dir) / "langfuse"
    existing = {d.id for d in load_set(set_dir)} if any(Path(set_dir).rglob("*.md")) else set()
    for qi in queue_items:
        kind = str(getattr(qi.object_type, "value", qi.object_type)).lower()
        where = f"{kind} {qi.object_id}"
        if kind not in ("trace", "observation"):
            report.skipped.append(f"{where}: only traces and observations of posts can be labelled drafts")
            continue
        labels = _labels(by_subject.get((kind, qi.object_id), []))
        if isinstance(labels, str):
            report.skipped.append(f"{where}: {labels}")
            continue
        human, flag, reasons = labels
        trace_id = qi.object_id if kind == "trace" else trace_of.get(qi.object_id)
        if not trace_id:
            report.skipped.append(f"{where}: no trace id for the observation")
            continue
        try:
            observations = list(_pages(lambda page, cursor, trace_id=trace_id: client.api.observations.get_many(
                trace_id=trace_id, fields="core,basic,io,metadata", limit=100, cursor=cursor, parse_io_as_json=True)))
        except Exception as err:  # noqa: BLE001
            report.skipped.append(f"{where}: reading trace {trace_id}: {type(err).__name__}: {str(err)[:200]}")
            continue
        if kind == "observation":
            gate = next((o for o in observations if o.id == qi.object_id), None)
            payload = _gate_payload(gate) if gate is not None else None
        else:  # a whole post's trace: the draft at its last gate
            gates = sorted((o for o in observations if _gate_payload(o) is not None),
                           key=lambda o: str(getattr(o, "start_time", "")))
            gate = gates[-1] if gates else None
            payload = _gate_payload(gate) if gate is not None else None
        if payload is None:
            report.skipped.append(f"{where}: no draft in the trace (recorded with NEWSROOM_TRACING_CAPTURE_CONTENT=false?)")
            continue
        draft = payload["draft"]
        notes = _research_notes(observations)
        if not notes:
            report.skipped.append(f"{where}: no research notes in the trace")
            continue
        if any(_CLIPPED.search(str(x)) for x in (draft.get("body", ""), draft.get("title", ""))):
            report.skipped.append(f"{where}: the draft was clipped in the trace (longer than a span keeps)")
            continue
        item_id = f"lf-{trace_id[:12]}-v{draft.get('version', 0)}"
        if item_id in existing:
            report.skipped.append(f"{where}: already in the set as {item_id}")
            continue
        try:
            d = LabelledDraft(
                id=item_id, topic=str(payload.get("topic") or draft.get("title")), title=str(draft["title"]),
                body=str(draft["body"]).strip(), notes=notes, defect="unplanted", flag=flag, scores=human,
                reasons=reasons, origin="langfuse", trace_id=trace_id,
                observation_id=gate.id if gate is not None else None, queue_id=queue_id)
        except Exception as err:  # noqa: BLE001 - pydantic: a draft too short, a title too long
            report.skipped.append(f"{where}: {str(err)[:200]}")
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{item_id}.md"
        path.write_text(render_draft(d), encoding="utf-8")
        existing.add(item_id)
        report.written.append(path)
    return report
