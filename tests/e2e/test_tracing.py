"""Langfuse tracing end to end: real posts (in-process runner, scripted LLM over HTTP, embedded
PostgreSQL) traced by the real Langfuse SDK to a loopback OTLP/HTTP receiver."""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from service.runner import resume, start_post
from storage import posts
from tests.engine_fixtures import JUDGE, PASSING, WRITER, reset_runtime, writer_reply
from tests.otlp_receiver import LangfuseReceiver
from tests.scripted_llm import Fault, Reply
from tools.tracing import REDACTED, Scrubber, flush_traces, get_tracing, reset_tracing, trace_id_for

ROOT = Path(__file__).resolve().parents[2]
DESKS = {"researcher", "writer", "editor", "human_approval", "publisher"}
PRICES = {WRITER: (2.0, 10.0), JUDGE: (1.0, 5.0)}  # USD per 1M tokens, so costs are not all zero

# Secrets this process is configured with (set before the first Langfuse client: one per key per process).
LLM_KEY = "sk-newsroom-" + secrets.token_hex(16)
BOT_TOKEN = "987654321:AA" + secrets.token_hex(16)
WEB_TOKEN = "web-" + secrets.token_hex(16)
LANGFUSE_SECRET = "sk-lf-" + secrets.token_hex(16)
DB_PASSWORD = "dbpass-" + secrets.token_hex(8)
ALL_SECRETS = (LLM_KEY, BOT_TOKEN, WEB_TOKEN, LANGFUSE_SECRET, DB_PASSWORD)


def _env(**values: str | None) -> dict[str, str | None]:
    """Set (or with None, remove) environment variables; returns the previous values."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    return old


def _retrace() -> None:
    reset_runtime()  # settings + gateways (the gateway picks up the tracing observer when built)
    reset_tracing()


@pytest.fixture(scope="module")
def langfuse(scripted_llm):
    """Tracing on for this module, exporting to a loopback receiver; off again afterwards."""
    with LangfuseReceiver() as receiver:
        old = _env(LANGFUSE_PUBLIC_KEY="pk-lf-newsroom-tests", LANGFUSE_SECRET_KEY=LANGFUSE_SECRET,
                   LANGFUSE_BASE_URL=receiver.base_url, LANGFUSE_TIMEOUT="1",
                   NEWSROOM_TRACING_FLUSH_TIMEOUT_S="10", NEWSROOM_LLM_API_KEY=LLM_KEY,
                   TELEGRAM_BOT_TOKEN=BOT_TOKEN, NEWSROOM_WEB_TOKEN=WEB_TOKEN,
                   NEWSROOM_LLM_PRICES_JSON=json.dumps(PRICES))
        _retrace()
        try:
            yield receiver
        finally:
            _env(**old)
            _retrace()


@pytest.fixture
def lf(langfuse, llm):
    _retrace()
    assert get_tracing() is not None
    langfuse.clear()
    yield langfuse


def _by_name(spans, name):
    return [s for s in spans if s.name == name]


async def test_one_trace_across_interrupt_and_resume(db, lf, llm):
    llm.on_chat(lambda req: writer_reply(req, tokens_in=120, tokens_out=40, delay_s=0.2), model=WRITER)
    llm.on_chat(lambda req: Reply.json(PASSING, tokens_in=200, tokens_out=60), model=JUDGE)

    snap = await start_post("How GQA shrinks the KV cache", requester="alice", source="test")
    assert snap.waiting_for_human
    trace_id = trace_id_for(snap.thread_id)
    # The runner flushed at the interrupt: the first run's spans are already there.
    assert lf.wait_for(lambda: _by_name(lf.spans_of(trace_id), "human_approval"))
    first_run = {s.span_id for s in lf.spans_of(trace_id)}

    done = await resume(snap.thread_id, {"action": "approve", "reviewer": "bob"})
    assert done.values["outcome"] == "published"
    assert lf.wait_for(lambda: _by_name(lf.spans_of(trace_id), "publisher"))
    spans = lf.spans_of(trace_id)
    assert {s.span_id for s in spans} > first_run  # the resume added spans to the same trace

    # Every span this post produced is in its one trace (nothing strayed into another).
    assert lf.spans and all(s.trace_id == trace_id for s in lf.spans)
    names = [s.name for s in spans]
    assert DESKS <= set(names)
    assert names.count("human_approval") == 2  # paused at the gate, then answered
    gate_pause, gate_answer = sorted(_by_name(spans, "human_approval"), key=lambda s: s.start_ns)
    assert gate_pause.span_id in first_run and gate_answer.span_id not in first_run
    assert "waiting for a human" in gate_pause.attributes["langfuse.observation.output"]
    assert "approve" in gate_answer.attributes["langfuse.observation.output"]

    for s in spans:
        assert s.attributes["session.id"] == snap.thread_id, s.name
        assert s.attributes["user.id"] == "alice", s.name
        assert s.attributes["langfuse.trace.name"] == "newsroom post"
        assert "source:test" in s.attributes["langfuse.trace.tags"]
    for desk in DESKS:
        assert all(s.type == "span" for s in _by_name(spans, desk))

    # A generation per LLM call, nested under the desk that made it, with model, usage, cost, latency.
    desk_of = {s.span_id: s.name for s in spans if s.name in DESKS}
    # (ungrounded research: the Writer makes no outline call, only the draft)
    writer_gen, = _by_name(spans, "llm.writer")
    assert writer_gen.type == "generation" and desk_of[writer_gen.parent_span_id] == "writer"
    assert writer_gen.attributes["langfuse.observation.model.name"] == WRITER
    assert writer_gen.json_attr("langfuse.observation.usage_details") == {"input": 120, "output": 40, "total": 160}
    assert writer_gen.json_attr("langfuse.observation.cost_details")["total"] == pytest.approx(
        (120 * 2.0 + 40 * 10.0) / 1e6)
    assert writer_gen.duration_s >= 0.2  # the real call's start and end, not the observer's moment
    assert "GQA and the KV cache" in writer_gen.attributes["langfuse.observation.output"]
    judge_gen, = _by_name(spans, "llm.judge")
    assert desk_of[judge_gen.parent_span_id] == "editor"
    assert judge_gen.json_attr("langfuse.observation.usage_details")["input"] == 200

    # The generations account for every token the post's usage counts.
    gens = [s for s in spans if s.type == "generation"]
    row = await posts.get_post(db, snap.thread_id)
    assert sum(g.json_attr("langfuse.observation.usage_details")["input"] for g in gens) == row["tokens_in"]
    assert sum(g.json_attr("langfuse.observation.usage_details")["output"] for g in gens) == row["tokens_out"]
    assert len(gens) == row["llm_calls"]

    # The verdict as scores on the trace, attached to the editor span.
    assert lf.wait_for(lambda: {"editor_mean", "human_decision"} <= {sc["name"] for sc in lf.scores})
    scores = {sc["name"]: sc for sc in lf.scores if sc["traceId"] == trace_id}
    editor_span, = _by_name(spans, "editor")
    assert scores["technical_accuracy"]["value"] == 4.0 and scores["technical_accuracy"]["dataType"] == "NUMERIC"
    assert scores["editor_mean"]["value"] == 4.0
    assert scores["editor_decision"]["value"] == "approve" and scores["editor_decision"]["dataType"] == "CATEGORICAL"
    assert scores["confident_hallucination"]["value"] == 0.0
    human = scores.pop("human_decision")  # the human's answer: on the gate span that took it
    assert human["value"] == "approve" and human["observationId"] == gate_answer.span_id
    cost = scores.pop("cost_usd")  # the post's spend: sent at the gate and again, upserted, at publication
    assert cost["value"] == pytest.approx(float(row["cost_usd"])) and cost["dataType"] == "NUMERIC"
    assert all(sc["observationId"] == editor_span.span_id for sc in scores.values())
    assert lf.auth_headers and all(h.startswith("Basic ") for h in lf.auth_headers)


async def test_human_decisions_are_scores_on_the_trace(db, lf, llm):
    """The human's answer at the gate: a categorical "human_decision" score on the post's trace and
    the gate span that took the answer (comment = feedback; reviewer and draft version in metadata).
    A replayed node upserts the same score (same id), never adds one."""
    from graphs import ledger

    def human_scores(trace_id):
        return [sc for sc in lf.scores if sc["name"] == "human_decision" and sc["traceId"] == trace_id]

    def answering_gates(trace_id):
        return {s.span_id for s in _by_name(lf.spans_of(trace_id), "human_approval")
                if "waiting for a human" not in s.attributes.get("langfuse.observation.output", "")}

    revised = await start_post("Human verdicts in Langfuse", requester="ivy", source="test")
    again = await resume(revised.thread_id, {"action": "revise", "feedback": "Cite the GQA paper's table 3.",
                                             "reviewer": "bob"})
    assert again.waiting_for_human and again.interrupt["draft"]["version"] == 2
    approved = await start_post("Human approvals in Langfuse", requester="ivy", source="test")
    done = await resume(approved.thread_id, {"action": "approve", "reviewer": "carol"})
    assert done.values["outcome"] == "published"

    rev_trace, app_trace = trace_id_for(revised.thread_id), trace_id_for(approved.thread_id)
    assert lf.wait_for(lambda: human_scores(rev_trace) and human_scores(app_trace)
                       and answering_gates(rev_trace) and answering_gates(app_trace)), lf.scores
    (revise,), (approve,) = human_scores(rev_trace), human_scores(app_trace)
    assert (revise["value"], revise["dataType"]) == ("revise", "CATEGORICAL")
    assert revise["comment"] == "Cite the GQA paper's table 3."
    assert revise["metadata"]["reviewer"] == "bob" and revise["metadata"]["draft_version"] == 1
    assert revise["observationId"] in answering_gates(rev_trace)
    assert (approve["value"], approve["dataType"]) == ("approve", "CATEGORICAL") and not approve.get("comment")
    assert approve["metadata"]["reviewer"] == "carol" and approve["metadata"]["draft_version"] == 1
    assert approve["observationId"] in answering_gates(app_trace)
    # The DB holds the same decision.
    event, = [e for e in await posts.list_events(db, approved.thread_id) if e["kind"] == "human_decision"]
    assert (event["detail"]["decision"], event["actor"]) == ("approve", "carol")

    # A replay of the approving node (same answered checkpoint): the DB refuses it, the score is
    # sent again with the same id (an upsert in Langfuse), so nothing is counted twice.
    recorded = await ledger.record_decision(
        approved.thread_id, reviewer="carol", decision="approve", payload_hash=event["detail"]["payload_hash"],
        checkpoint_id=event["detail"]["checkpoint_id"], detail={"feedback": None, "draft_version": 1})
    assert recorded is False
    await flush_traces(10)
    assert lf.wait_for(lambda: len(human_scores(app_trace)) == 2)
    assert {sc["id"] for sc in human_scores(app_trace)} == {approve["id"]}


async def test_cost_per_post_is_a_score_on_its_trace(db, lf, llm):
    """The post's spend (its recorded usage, priced by NEWSROOM_LLM_PRICES_JSON) as the numeric score
    cost_usd: sent at the gate, upserted (same id) with the total when the post is published."""
    llm.on_chat(lambda req: writer_reply(req, tokens_in=300, tokens_out=200), model=WRITER)
    llm.on_chat(lambda req: Reply.json(PASSING, tokens_in=500, tokens_out=100), model=JUDGE)

    def costs(trace_id):
        return [sc for sc in lf.scores if sc["name"] == "cost_usd" and sc["traceId"] == trace_id]

    snap = await start_post("What a post costs, in Langfuse", requester="ivy", source="test")
    trace_id = trace_id_for(snap.thread_id)
    at_gate = float((await posts.get_post(db, snap.thread_id))["cost_usd"])
    assert at_gate > 0
    assert lf.wait_for(lambda: costs(trace_id)), lf.scores
    first = costs(trace_id)[-1]
    assert first["dataType"] == "NUMERIC" and first["value"] == pytest.approx(at_gate)
    assert first["metadata"]["llm_calls"] == (await posts.get_post(db, snap.thread_id))["llm_calls"]

    llm.on_chat(lambda req: writer_reply(req, tokens_in=300, tokens_out=200), model=WRITER)
    again = await resume(snap.thread_id, {"action": "revise", "feedback": "More numbers.", "reviewer": "bob"})
    done = await resume(again.thread_id, {"action": "approve", "reviewer": "bob"})
    assert done.values["outcome"] == "published"
    total = float((await posts.get_post(db, snap.thread_id))["cost_usd"])
    assert total > at_gate
    assert lf.wait_for(lambda: any(sc["value"] == pytest.approx(total) for sc in costs(trace_id))), costs(trace_id)
    assert {sc["id"] for sc in costs(trace_id)} == {first["id"]}  # one score per post, upserted


async def test_no_secret_leaves_in_a_span(db, lf, llm):
    # A model that echoes credentials, a topic with a DSN, a judge quoting them in its reasoning.
    leak = f"key {LLM_KEY}, bot {BOT_TOKEN}, web {WEB_TOKEN}, langfuse {LANGFUSE_SECRET}"
    llm.on_chat(lambda req: Reply(text=f"# Leaky draft\n\nConfig dump: {leak}"), model=WRITER)
    llm.on_chat(lambda req: {**PASSING, "reasoning": {**PASSING["reasoning"], "calibration": f"saw {leak}"}},
                model=JUDGE)
    topic = f"Why postgresql://newsroom:{DB_PASSWORD}@db.internal:5432/news is slow"
    snap = await start_post(topic, requester="carol")
    assert snap.waiting_for_human

    # A failing call whose error text carries a secret: the generation's status message.
    llm.reset()
    llm.on_chat(Fault.server_error(message=f"upstream refused api_key={LLM_KEY}"), model=WRITER)
    failed = await start_post("A post whose writer fails", requester="carol")
    assert failed.values["outcome"] == "failed"

    ids = {trace_id_for(snap.thread_id), trace_id_for(failed.thread_id)}
    assert lf.wait_for(lambda: {s.trace_id for s in lf.spans} >= ids and any(
        sc["name"] == "calibration" for sc in lf.scores))
    everything = b"\n".join(lf.bodies)
    for secret in ALL_SECRETS:
        assert secret.encode() not in everything, f"a secret reached Langfuse: {secret[:10]}..."
    # ... while the content around them did arrive, scrubbed.
    writer_gen, = _by_name(lf.spans_of(trace_id_for(snap.thread_id)), "llm.writer")
    assert "Config dump" in writer_gen.attributes["langfuse.observation.output"]
    assert REDACTED in writer_gen.attributes["langfuse.observation.output"]
    assert any(REDACTED in (sc.get("comment") or "") for sc in lf.scores if sc["name"] == "calibration")
    # (the researcher runs on the writer's model, so it meets the fault first)
    failed_spans = lf.spans_of(trace_id_for(failed.thread_id))
    failed_gens = [s for s in failed_spans if s.type == "generation"]  # one per attempt (retries included)
    assert failed_gens
    for gen in failed_gens:
        assert gen.attributes["langfuse.observation.level"] == "ERROR"
        assert "upstream refused" in gen.attributes["langfuse.observation.status_message"]
        assert REDACTED in gen.status_message  # the OpenTelemetry status too
    failed_desk, = [s for s in failed_spans if s.span_id == failed_gens[0].parent_span_id]
    assert failed_desk.attributes["langfuse.observation.level"] == "ERROR"
    assert REDACTED in failed_desk.attributes["langfuse.observation.status_message"]


def test_scrubber_keeps_prose_and_removes_credential_shapes():
    s = Scrubber(["a-configured-secret-value"])
    prose = "GQA keeps 8 KV heads; per token: 128 KiB; max_tokens: 450; see http://host:8080/v1/models@x"
    assert s.text(prose) == prose
    dirty = ("dsn postgresql://u:pw-123456@db:5432/x, conninfo password=hunter2222, "
             "bot 123456789:AAEhBOweik6ad9r_QXMENQjcrGbqCr4K-ra, sk-ant-api03-abcdefghijklmnopqrst, "
             "Authorization: Bearer abcdefghijkl, a-configured-secret-value")
    clean = s.text(dirty)
    for secret in ("pw-123456", "hunter2222", "AAEhBOweik6ad9r", "sk-ant-api03", "abcdefghijkl",
                   "a-configured-secret-value"):
        assert secret not in clean
    assert clean.startswith("dsn postgresql://u:[REDACTED]@db:5432/x")
    assert s.value({"api_key": "x" * 20, "publish_key": "posts/1", "tokens_in": 5, "nested": ["sk-lf-" + "1" * 20]}) == \
        {"api_key": REDACTED, "publish_key": "posts/1", "tokens_in": 5, "nested": [REDACTED]}


def test_scrubber_removes_cut_off_and_url_quoted_secrets():
    """A secret cut short (pydantic's head...tail repr of a long input) or URL-quoted is still a secret."""
    from config import load_settings
    from tools.tracing import configured_secrets

    key, password = "canary-llm-key-5e1d77b0", "pa/ss+w@rd:9%31"
    settings = load_settings(llm_api_key=key, database_url=f"postgresql://app:{quote(password, safe='')}@db:5432/x")
    s = Scrubber(configured_secrets(settings))
    cut = "input_value={'name': 'eve', 'api_key'...anary-llm-key-5e1d77b0'}, input_type=dict"
    assert s.text(cut) == "input_value={'name': 'eve', 'api_key'...[REDACTED]'}, input_type=dict"
    assert s.text(f"head {key[:13]}... tail") == "head [REDACTED]... tail"
    assert s.text(f"twice {key}{key} and {key[:-3]}") == f"twice {REDACTED}{REDACTED} and {REDACTED}"
    for shown in (password, quote(password, safe=""), quote_plus(password)):  # plain, as in the URL, as in a form
        assert s.text(f"auth failed for {shown}!") == f"auth failed for {REDACTED}!"
    prose = "canary-llm keys are 23 characters; pa/ss is a path"  # shorter runs of a secret stay
    assert s.text(prose) == prose


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _max_loop_lag_during(coro) -> tuple[object, float]:
    """Run coro while a ticker measures the event loop's longest stall."""
    lag = 0.0
    stop = asyncio.Event()

    async def tick():
        nonlocal lag
        while not stop.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.01)
            lag = max(lag, time.monotonic() - t - 0.01)

    ticker = asyncio.create_task(tick())
    try:
        return await coro, lag
    finally:
        stop.set()
        await ticker


async def test_langfuse_down_the_post_still_publishes(db, langfuse, llm):
    # A second public key: its own client (one per key per process), exporting to a closed port.
    old = _env(LANGFUSE_PUBLIC_KEY="pk-lf-newsroom-down", LANGFUSE_BASE_URL=f"http://127.0.0.1:{_closed_port()}")
    _retrace()
    try:
        assert get_tracing() is not None
        langfuse.clear()
        t0 = time.monotonic()
        snap = await start_post("Tracing host down", requester="dave")
        done = await resume(snap.thread_id, {"action": "approve"})
        elapsed = time.monotonic() - t0
        assert done.values["outcome"] == "published"
        t1 = time.monotonic()
        assert await flush_traces(timeout_s=5) in (True, False)
        assert time.monotonic() - t1 < 3, "a flush against a closed port took long"
        assert not langfuse.spans_of(trace_id_for(snap.thread_id))  # nothing went to the live receiver
        print(f"post with Langfuse down: {elapsed:.2f} s")
    finally:
        _env(**old)
        _retrace()


async def test_langfuse_hanging_never_blocks_a_run(db, langfuse, llm, monkeypatch):
    # A host that accepts connections and never answers: the worst case for a synchronous flush.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    old = _env(LANGFUSE_PUBLIC_KEY="pk-lf-newsroom-hung", LANGFUSE_BASE_URL=f"http://127.0.0.1:{hung.getsockname()[1]}",
               NEWSROOM_TRACING_FLUSH_TIMEOUT_S="0.3")
    _retrace()
    try:
        t0 = time.monotonic()
        snap, lag = await _max_loop_lag_during(start_post("Tracing host hangs", requester="erin"))
        assert snap.waiting_for_human
        t1 = time.monotonic()
        delivered, flush_lag = await _max_loop_lag_during(flush_traces())
        flush_wait = time.monotonic() - t1
        assert delivered is False and flush_wait < 1.0  # bounded by tracing_flush_timeout_s, not the host
        assert flush_lag < 0.25, f"the event loop stalled {flush_lag:.2f} s during a flush"
        done = await resume(snap.thread_id, {"action": "approve"})
        assert done.values["outcome"] == "published"
        print(f"run with Langfuse hanging: {t1 - t0:.2f} s, max loop lag {lag:.3f} s, flush wait {flush_wait:.2f} s")
    finally:
        _env(**old)
        hung.close()
        _retrace()


def test_off_without_keys_imports_nothing_and_starts_nothing():
    # A fresh interpreter without Langfuse keys: the engine loads, gateways get no observer, the
    # SDK is never imported, no thread is started, nothing is logged.
    code = (
        "import logging, sys, threading, asyncio\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        "import graphs.engine, service.runner\n"
        "from tools.tracing import get_tracing, traced_desk\n"
        "from tools.llm import get_gateway\n"
        "@traced_desk('x')\n"
        "async def node(state, config): return {'ok': state}\n"
        "assert asyncio.run(node(1, {'configurable': {'thread_id': 't'}})) == {'ok': 1}\n"
        "assert get_tracing() is None and get_gateway()._observers == []\n"
        "print('langfuse' in sys.modules, threading.active_count())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGFUSE_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "1"]
    assert "langfuse" not in out.stderr.lower()


async def test_agent_server_run_and_in_process_resume_share_one_trace(db, lf, llm, session_dir):
    # `newsroom serve` traces from inside our code (no callbacks can be passed per run); its run stops
    # at the gate, this process resumes it: two processes, one trace.

    from tests.server_fixtures import AgentServer, free_port, service_client

    server = AgentServer(free_port(), dict(os.environ, NEWSROOM_LOG_LEVEL="INFO"),
                         session_dir / "agent-server-tracing.log").start()
    try:
        client = service_client(server.url)
        thread = await client.threads.create()
        tid = thread["thread_id"]
        await client.runs.wait(tid, "newsroom", input={"topic": "Traced in the server", "requester": "frank",
                                                       "source": "api"})
        assert (await client.threads.get_state(tid))["next"] == ["human_approval"], server.log_tail()
        trace_id = trace_id_for(tid)
        # The gate asks for a flush: the server's spans arrive without waiting for a batch tick.
        assert lf.wait_for(lambda: _by_name(lf.spans_of(trace_id), "human_approval"), timeout_s=10), server.log_tail()
        server_spans = {s.span_id for s in lf.spans_of(trace_id)}
        assert {"researcher", "writer", "editor", "llm.writer", "llm.judge"} <= {s.name for s in lf.spans_of(trace_id)}

        done = await resume(tid, {"action": "approve", "reviewer": "grace"})
        assert done.values["outcome"] == "published"
        assert lf.wait_for(lambda: _by_name(lf.spans_of(trace_id), "publisher"))
        spans = lf.spans_of(trace_id)
        assert {s.span_id for s in spans} > server_spans
        assert all(s.attributes["session.id"] == tid and s.attributes["user.id"] == "frank" for s in spans)
        assert "source:api" in spans[0].attributes["langfuse.trace.tags"]
        log_text = server.log_tail(200_000)
        assert "BlockingError" not in log_text and "Blocking call" not in log_text, log_text[-3000:]
    finally:
        server.stop()
