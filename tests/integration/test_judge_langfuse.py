"""Judge calibration in Langfuse through the real SDK, against a Langfuse stand-in over real HTTP
(tests/langfuse_api.py): the set pushed as a dataset, an eval run recorded as an experiment with
per-item and run-level scores, and labels from an annotation queue pulled back into the set from
the trace of a real post (in-process runner, scripted LLM, embedded PostgreSQL)."""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.editor import DIMENSIONS
from evals.judge.labels import load_set
from tests.engine_fixtures import reset_runtime
from tests.langfuse_api import LangfuseAPIReceiver
from tools.tracing import flush_traces, get_tracing, reset_tracing, trace_id_for

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "evals" / "judge" / "recorded" / "verdicts.jsonl"
# Not the key of tests/e2e/test_tracing.py: the SDK keeps one client (and exporter) per public key per process.
PUBLIC = "pk-lf-newsroom-judge-tests"
SECRET = "sk-lf-" + secrets.token_hex(16)
QUEUE = "queue-gate-drafts"


def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    return old


@pytest.fixture(scope="module")
def langfuse(scripted_llm):  # noqa: F811
    with LangfuseAPIReceiver(PUBLIC, SECRET) as receiver:
        old = _env(LANGFUSE_PUBLIC_KEY=PUBLIC, LANGFUSE_SECRET_KEY=SECRET, LANGFUSE_BASE_URL=receiver.base_url,
                   LANGFUSE_TIMEOUT="2", NEWSROOM_TRACING_FLUSH_TIMEOUT_S="10")
        reset_runtime()
        reset_tracing()
        try:
            yield receiver
        finally:
            _env(**old)
            reset_runtime()
            reset_tracing()


@pytest.fixture
def lf(langfuse):
    reset_runtime()
    reset_tracing()
    assert get_tracing() is not None
    yield langfuse


def _cli(*args: str):
    from service.cli import main

    result = CliRunner().invoke(main, ["eval-judge", "--quiet", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_the_set_is_a_dataset_and_a_run_is_an_experiment_with_scores(lf):
    if not RECORDED.exists():
        pytest.skip("no recorded verdicts committed yet")
    code, out = _cli("--route", "recorded", "--dataset", "newsroom-judge-test")
    assert code == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    items = load_set()

    # The dataset and its items, as the SDK created them over the API.
    assert "newsroom-judge-test" in lf.datasets
    pushed = {i["metadata"]["item_id"]: i for i in lf.dataset_items.values()}
    assert set(pushed) == {i.id for i in items}
    gqa = pushed["01-gqa-wrong-number"]
    assert gqa["id"] == "newsroom-judge-test.01-gqa-wrong-number"
    assert gqa["expectedOutput"] == {"technical_accuracy": 2, "calibration": 2, "mechanistic_depth": 4,
                                     "audience_calibration": 5, "flag": "confident_hallucination",
                                     "decision": "reject"}
    assert gqa["metadata"]["defect"] == "wrong_number" and "eight times" in gqa["metadata"]["planted"]
    assert set(gqa["input"]) == {"topic", "title", "body", "notes"} and "<source" in gqa["input"]["notes"]
    assert all(r["auth_ok"] for r in lf.requests)

    # One experiment per recorded run: a trace per item carrying the experiment and dataset item ids.
    runs = summary["runs"]
    assert lf.wait_for(lambda: len([s for s in lf.spans if s.name == "experiment-item-run"])
                       >= len(runs) * len(items), 30)
    item_runs = [s for s in lf.spans if s.name == "experiment-item-run"]
    by_experiment: dict[str, list] = {}
    for s in item_runs:
        by_experiment.setdefault(s.attributes["langfuse.experiment.id"], []).append(s)
    assert len(by_experiment) == len(runs)
    dataset_id = lf.datasets["newsroom-judge-test"]["id"]
    for spans in by_experiment.values():
        assert len(spans) == len(items)
        assert {s.attributes["langfuse.experiment.dataset.id"] for s in spans} == {dataset_id}
        assert {s.attributes["langfuse.experiment.item.id"] for s in spans} == set(lf.dataset_items)

    # Per-item scores on each item's trace; run-level scores (r per dimension...) on the experiment.
    def scores_named(name):
        return [sc for sc in lf.scores if sc["name"] == name]

    assert lf.wait_for(lambda: len(scores_named("verdict_valid")) == len(items) * len(runs)
                       and scores_named("r_overall") or scores_named("decision_accuracy"), 20)
    item_traces = {s.trace_id for s in item_runs}
    assert {sc["traceId"] for sc in scores_named("verdict_valid")} == item_traces
    run_level = [sc for sc in lf.scores if sc.get("datasetRunId")]
    assert {sc["datasetRunId"] for sc in run_level} == set(by_experiment)
    first = runs[0]
    mine = {sc["name"]: sc["value"] for sc in run_level if sc["datasetRunId"] == next(iter(by_experiment))}
    expected = {f"r_{d}": first["r"][d] for d in (*DIMENSIONS, "overall") if first["r"][d] is not None}
    expected.update({"decision_accuracy": first["decision"]["accuracy"], "invalid_rate": first["invalid_rate"]})
    assert {k: mine[k] for k in expected} == pytest.approx(expected)
    valid = sum(sc["value"] == 1.0 for sc in scores_named("verdict_valid")
                if sc["traceId"] in {s.trace_id for s in next(iter(by_experiment.values()))})
    assert valid == first["valid"]


async def test_annotation_queue_labels_come_back_into_the_set(db, lf, llm, tmp_path):  # noqa: F811
    from service.runner import start_post

    snap = await start_post("How GQA shrinks the KV cache", requester="alice", source="test")
    assert snap.waiting_for_human
    trace_id = trace_id_for(snap.thread_id)
    await flush_traces(10)
    assert lf.wait_for(lambda: any(s.name == "human_approval" and s.trace_id == trace_id for s in lf.spans))

    # People label the gate draft in the queue (the score configs of the README); a second, half-done item.
    lf.enqueue(QUEUE, trace_id, "TRACE")
    subject = {"kind": "trace", "id": trace_id}
    labels = {"technical_accuracy": 2, "calibration": 3, "mechanistic_depth": 2, "audience_calibration": 4}
    for dim, value in labels.items():
        lf.annotate(QUEUE, subject, f"human_{dim}", value, comment=f"{dim}: checked against the notes")
    lf.annotate(QUEUE, subject, "human_flag", "confident_hallucination", comment="a number the notes lack")
    lf.enqueue(QUEUE, "0" * 32, "TRACE")
    lf.annotate(QUEUE, {"kind": "trace", "id": "0" * 32}, "human_technical_accuracy", 4)

    set_dir = tmp_path / "set"
    shutil.copytree(ROOT / "evals" / "judge" / "drafts", set_dir)
    from config import get_settings
    from evals.judge.langfuse_sync import pull_annotations

    report = pull_annotations(get_settings(), QUEUE, set_dir)
    assert len(report.written) == 1, report.skipped
    assert report.skipped == [f"trace {'0' * 32}: missing score(s) human_calibration, human_mechanistic_depth, "
                              "human_audience_calibration, human_flag"]
    pulled = load_set(report.written[0])[0]
    draft = snap.interrupt["draft"]
    assert pulled.id == f"lf-{trace_id[:12]}-v{draft['version']}"
    assert (pulled.title, pulled.body) == (draft["title"], draft["body"].strip())
    assert pulled.topic == "How GQA shrinks the KV cache" and pulled.defect == "unplanted"
    assert pulled.human_scores == labels and pulled.flag == "confident_hallucination"
    assert pulled.human_decision == "reject"
    assert pulled.reasons.technical_accuracy == "technical_accuracy: checked against the notes"
    assert pulled.notes == snap.values["research"]["notes"]  # what the writer had, from the researcher span
    assert (pulled.origin, pulled.trace_id, pulled.queue_id) == ("langfuse", trace_id, QUEUE)
    reads = lf.requests_to("GET", "/api/public/v3/scores")
    assert reads and reads[0]["query"]["queueId"] == QUEUE and reads[0]["query"]["source"] == "ANNOTATION"

    # Pulling again adds nothing; the CLI pulls, then evaluates the grown set (here: re-scoring, no judge).
    again = pull_annotations(get_settings(), QUEUE, set_dir)
    assert again.written == [] and any("already in the set" in s for s in again.skipped)
    (set_dir / "langfuse" / report.written[0].name).unlink()  # the command pulls it again itself
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "eval-judge", "--quiet", "--from-langfuse", QUEUE, "--set", str(set_dir),
        "--route", "local", "--rescore", "--no-langfuse", "--cache", str(tmp_path / "empty.jsonl"),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ))
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "pulled 1 labelled draft(s) from annotation queue" in err.decode()
    doc = json.loads(out.decode().strip().splitlines()[-1])
    assert doc["items"] == len(load_set()) + 1 and doc["runs"][0]["missing"] == doc["items"]
