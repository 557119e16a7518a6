"""The LLM gateway against scripted OpenAI- and Anthropic-compatible servers over real HTTP."""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from decimal import Decimal
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from config import ConfigError, load_settings
from tests.scripted_llm import Fault, Reply, ScriptedLLM
from tools.breaker import BreakerOpen, BreakerState, CircuitBreaker
from tools.llm import (
    LLMAdapterMissing,
    LLMCallEvent,
    LLMGateway,
    LLMOutputInvalid,
    LLMUnavailable,
    Route,
    get_gateway,
    price_for,
    routes_from_settings,
)

Score = Literal[1, 2, 3, 4, 5]


class Verdict(BaseModel):
    # Scores as an integer enum: llama.cpp's grammar keeps enums but not minimum/maximum.
    technical_accuracy: Score
    calibration: Score
    reasoning: str = Field(max_length=400)


GOOD = {"technical_accuracy": 4, "calibration": 3, "reasoning": "Sound, one vague claim."}
MSGS = [{"role": "system", "content": "You are a strict technical editor."},
        {"role": "user", "content": "Grade this draft about GQA."}]


@pytest.fixture(scope="module")
def primary():
    with ScriptedLLM(models=["newsroom-writer", "newsroom-judge", "meta-llama/Llama-3.1-8B-Instruct"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def backup():
    with ScriptedLLM(models=["local-writer", "claude-sonnet-4-6"]) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh_servers(primary, backup):
    primary.reset()
    backup.reset()
    yield


class Recorded:
    """An in-memory recorder (the DB recorder is exercised in the cost test)."""

    def __init__(self):
        self.rows: list[dict] = []

    async def __call__(self, **row) -> None:
        self.rows.append(row)


def make_gateway(routes: dict[str, list[dict]], *, recorder=None, clock=time.monotonic, **overrides):
    base = dict(llm_retry_initial_s=0.01, llm_retry_max_s=0.05, llm_timeout_s=5.0, anthropic_api_key="sk-test",
                routes_json=json.dumps(routes))
    base.update(overrides)
    settings = load_settings(**base)
    rec = recorder if recorder is not None else Recorded()
    return LLMGateway(settings, recorder=rec, clock=clock), rec


def vllm(srv: ScriptedLLM, model: str = "newsroom-writer") -> dict:
    return {"provider": "vllm", "base_url": srv.base_url, "model": model}


def llamacpp(srv: ScriptedLLM, model: str = "local-writer") -> dict:
    return {"provider": "llamacpp", "base_url": srv.base_url, "model": model}


def claude(srv: ScriptedLLM, model: str = "claude-sonnet-4-6") -> dict:
    return {"provider": "anthropic", "base_url": srv.anthropic_base_url, "model": model}


# --- structured output: each provider's own form -----------------------------------------------

async def test_vllm_json_schema_request_and_validated_reply(primary):
    gw, rec = make_gateway({"judge": [vllm(primary, "newsroom-judge")]})
    primary.on_chat(GOOD, model="newsroom-judge")
    verdict, res = await gw.complete_json("judge", MSGS, Verdict, thread_id="t-shape")
    assert isinstance(verdict, Verdict) and verdict.technical_accuracy == 4
    rf = primary.requests[-1].response_format
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["name"] == "Verdict"
    assert rf["json_schema"]["schema"]["properties"]["calibration"]["enum"] == [1, 2, 3, 4, 5]
    assert res.provider == "vllm" and res.attempts == 1 and res.tokens_out > 0
    assert [r["outcome"] for r in rec.rows] == ["ok"]


async def test_llamacpp_json_object_with_schema(backup):
    gw, _ = make_gateway({"judge": [llamacpp(backup, "local-judge")]})
    backup.on_chat(GOOD)
    verdict, _ = await gw.complete_json("judge", MSGS, Verdict)
    rf = backup.requests[-1].response_format
    # llama.cpp refuses {"type": "json_schema"} with a 500; json_object + schema becomes a grammar.
    assert rf["type"] == "json_object"
    assert rf["schema"]["required"] == ["technical_accuracy", "calibration", "reasoning"]
    assert verdict.calibration == 3


async def test_anthropic_tool_use_request_and_reply(backup):
    gw, _ = make_gateway({"judge": [claude(backup)]})
    backup.on_chat(Reply(text="", tool_input=GOOD))
    verdict, res = await gw.complete_json("judge", MSGS, Verdict)
    req = backup.requests[-1]
    assert req.api == "anthropic" and req.path == "/v1/messages"
    # This SDK generation sends the key as a bearer token (older ones used x-api-key).
    assert "sk-test" in (req.headers.get("authorization", "") + req.headers.get("x-api-key", ""))
    assert req.body["system"] == MSGS[0]["content"]  # system lifted out of the messages
    assert [m["role"] for m in req.body["messages"]] == ["user"]
    assert req.body["tool_choice"] == {"type": "tool", "name": "submit_Verdict"}
    assert req.body["tools"][0]["input_schema"]["properties"]["technical_accuracy"]["enum"] == [1, 2, 3, 4, 5]
    assert verdict == Verdict(**GOOD) and res.provider == "anthropic"


async def test_anthropic_plain_text(backup):
    gw, _ = make_gateway({"hyde": [claude(backup)]})
    backup.on_chat("A hypothetical passage about grouped-query attention.")
    res = await gw.complete_text("hyde", [{"role": "user", "content": "GQA"}], max_tokens=77)
    assert res.text.startswith("A hypothetical passage")
    assert backup.requests[-1].body["max_tokens"] == 77
    assert "tools" not in backup.requests[-1].body


@pytest.mark.parametrize("provider", ["vllm", "llamacpp", "anthropic"])
@pytest.mark.parametrize("bad", ["{not json", '{"technical_accuracy": 4}',
                                 '{"technical_accuracy": 4, "calibration": 1234567890, "reasoning": "x"}'])
async def test_invalid_output_raises_and_is_never_parsed_retried_or_rerouted(primary, backup, provider, bad):
    first = {"vllm": vllm(primary, "newsroom-judge"), "llamacpp": llamacpp(primary, "newsroom-judge"),
             "anthropic": claude(primary, "newsroom-judge")}[provider]
    gw, rec = make_gateway({"judge": [first, llamacpp(backup, "local-judge")]})
    primary.on_chat(bad)
    backup.on_chat(GOOD)
    with pytest.raises(LLMOutputInvalid) as info:
        await gw.complete_json("judge", MSGS, Verdict, thread_id="t-invalid")
    err = info.value
    assert err.errors and err.result.model == "newsroom-judge" and err.result.route_index == 0
    assert len(primary.requests) == 1 and backup.requests == []  # no retry, no fallback: the Editor decides
    assert [r["outcome"] for r in rec.rows] == ["invalid"]
    assert gw.breaker_states()[f"{first['provider']}@{first['base_url'].rstrip('/')}"]["state"] == "closed"


async def test_fenced_json_is_accepted(primary):
    gw, _ = make_gateway({"judge": [vllm(primary, "newsroom-judge")]})
    primary.on_chat("```json\n" + json.dumps(GOOD) + "\n```")
    verdict, _ = await gw.complete_json("judge", MSGS, Verdict)
    assert verdict.reasoning == GOOD["reasoning"]


# --- retries, breakers, fallbacks ---------------------------------------------------------------

async def test_burst_of_500s_opens_breaker_and_fallback_serves(primary, backup):
    offset = [0.0]
    gw, rec = make_gateway({"writer": [vllm(primary), llamacpp(backup)]}, clock=lambda: time.monotonic() + offset[0])
    primary.on_chat(Fault.server_error(500))
    backup.on_chat("fallback draft")

    res = await gw.complete_text("writer", MSGS, thread_id="t-burst")
    assert res.text == "fallback draft" and res.route_index == 1 and res.model == "local-writer"
    assert len(primary.requests) == 3 and res.attempts == 4  # 3 failed attempts trip it (threshold 3)
    key = f"vllm@{primary.base_url}"
    assert gw.breaker_states()[key]["state"] == "open"
    assert [r["outcome"] for r in rec.rows] == ["error", "error", "error", "ok"]
    assert "InternalServerError" in rec.rows[0]["error"]

    # Open: the next call goes to the fallback at once, the primary sees nothing.
    t0 = time.monotonic()
    res = await gw.complete_text("writer", MSGS)
    assert res.route_index == 1 and len(primary.requests) == 3 and res.attempts == 1
    assert time.monotonic() - t0 < 0.5

    # After the cool-down: one half-open probe; the primary has recovered, so it closes.
    primary.on_chat("primary back")
    offset[0] += 31.0
    assert gw.breaker_states()[key]["state"] == "half_open"
    res = await gw.complete_text("writer", MSGS)
    assert res.text == "primary back" and res.route_index == 0
    assert gw.breaker_states()[key]["state"] == "closed"


async def test_half_open_lets_exactly_one_probe_through(primary, backup):
    offset = [0.0]
    gw, _ = make_gateway({"writer": [vllm(primary), llamacpp(backup)]}, clock=lambda: time.monotonic() + offset[0],
                         llm_max_attempts=1)
    primary.on_chat(Fault.server_error(503))
    backup.on_chat("fallback")
    for _ in range(3):
        await gw.complete_text("writer", MSGS)
    assert len(primary.requests) == 3
    offset[0] += 31.0
    primary.on_chat(Reply(text="slow probe", delay_s=0.4))
    results = await asyncio.gather(*(gw.complete_text("writer", MSGS) for _ in range(4)))
    assert len(primary.requests) == 4  # exactly one probe
    assert sorted(r.route_index for r in results) == [0, 1, 1, 1]


async def test_failed_probe_reopens(primary, backup):
    offset = [0.0]
    gw, _ = make_gateway({"writer": [vllm(primary), llamacpp(backup)]}, clock=lambda: time.monotonic() + offset[0],
                         llm_max_attempts=1)
    primary.on_chat(Fault.server_error(502))
    for _ in range(3):
        await gw.complete_text("writer", MSGS)
    offset[0] += 31.0
    res = await gw.complete_text("writer", MSGS)  # the probe fails -> open again
    assert res.route_index == 1 and len(primary.requests) == 4
    state = gw.breaker_states()[f"vllm@{primary.base_url}"]
    assert state["state"] == "open" and state["times_opened"] == 2


async def test_429_retry_after_is_honoured(primary):
    gw, rec = make_gateway({"writer": [vllm(primary)]})
    primary.script(Fault.rate_limited(1.0), "after the wait")
    t0 = time.monotonic()
    res = await gw.complete_text("writer", MSGS)
    waited = time.monotonic() - t0
    assert res.text == "after the wait" and res.attempts == 2
    assert 1.0 <= waited < 2.5, waited  # the server's word, not the 10 ms backoff
    gap = primary.requests[1].at - primary.requests[0].at
    assert gap >= 0.95
    # A 429 is the endpoint asking us to slow down, not failing: the breaker does not count it.
    assert gw.breaker_states()[f"vllm@{primary.base_url}"]["consecutive_failures"] == 0
    assert [r["outcome"] for r in rec.rows] == ["error", "ok"] and "RateLimitError" in rec.rows[0]["error"]


async def test_retry_after_is_capped(primary):
    gw, _ = make_gateway({"writer": [vllm(primary)]}, llm_retry_after_max_s=0.2)
    primary.script(Fault.rate_limited(3600), "ok")
    t0 = time.monotonic()
    await gw.complete_text("writer", MSGS)
    assert time.monotonic() - t0 < 1.5


async def test_without_retry_after_the_backoff_is_short_and_jittered(primary):
    gw, _ = make_gateway({"writer": [vllm(primary)]}, llm_retry_initial_s=0.1, llm_retry_max_s=1.0)
    primary.script(Fault.server_error(500), Fault.server_error(500), "third time")
    t0 = time.monotonic()
    res = await gw.complete_text("writer", MSGS)
    elapsed = time.monotonic() - t0
    assert res.attempts == 3
    # 0.1 s + 0.2 s, each plus up to 0.1 s of jitter
    assert 0.3 <= elapsed < 1.0, elapsed


async def test_retries_stop_at_max_attempts_and_unavailable_names_the_route(primary):
    gw, rec = make_gateway({"writer": [vllm(primary)]})
    primary.on_chat(Fault.server_error(500))
    with pytest.raises(LLMUnavailable) as info:
        await gw.complete_text("writer", MSGS)
    assert len(primary.requests) == 3  # ours, with the SDK's own retries off
    msg = str(info.value)
    assert "writer" in msg and f"vllm:newsroom-writer@{primary.base_url}" in msg and "InternalServerError" in msg
    assert len(rec.rows) == 3


async def test_hang_hits_the_timeout_then_fallback(primary, backup):
    gw, rec = make_gateway({"writer": [vllm(primary), llamacpp(backup)]}, llm_timeout_s=0.5, llm_max_attempts=1)
    primary.on_chat(Fault.hang())
    backup.on_chat("served")
    t0 = time.monotonic()
    res = await gw.complete_text("writer", MSGS)
    elapsed = time.monotonic() - t0
    assert res.text == "served" and res.route_index == 1
    assert 0.5 <= elapsed < 1.5, elapsed
    assert rec.rows[0]["outcome"] == "error" and "Timeout" in rec.rows[0]["error"]
    assert gw.breaker_states()[f"vllm@{primary.base_url}"]["consecutive_failures"] == 1


async def test_hang_is_retried_within_the_deadline(primary):
    gw, _ = make_gateway({"writer": [vllm(primary)]}, llm_timeout_s=5.0)
    primary.on_chat(Fault.hang())
    t0 = time.monotonic()
    with pytest.raises(LLMUnavailable):
        await gw.complete_text("writer", MSGS, deadline_s=0.8)
    assert time.monotonic() - t0 < 1.6  # the desk's deadline bounds timeouts and backoffs


async def test_truncated_body_is_retried(primary):
    gw, _ = make_gateway({"writer": [vllm(primary)]})
    primary.script(Fault.truncated(), "whole")
    res = await gw.complete_text("writer", MSGS)
    assert res.text == "whole" and res.attempts == 2


async def test_non_retryable_4xx_goes_to_next_route_without_retry(primary, backup):
    gw, _ = make_gateway({"writer": [vllm(primary), llamacpp(backup)]})
    primary.on_chat(Fault.not_found())
    backup.on_chat("served")
    res = await gw.complete_text("writer", MSGS)
    assert res.route_index == 1 and len(primary.requests) == 1
    assert gw.breaker_states()[f"vllm@{primary.base_url}"]["consecutive_failures"] == 0


async def test_connection_refused_falls_back(backup):
    gw, _ = make_gateway({"writer": [{"provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "w",
                                      "require_listed": False}, llamacpp(backup)]})
    backup.on_chat("served")
    res = await gw.complete_text("writer", MSGS)
    assert res.route_index == 1 and res.attempts == 4


async def test_next_judge_model_by_start_at_or_exclude(primary, backup):
    gw, _ = make_gateway({"judge": [vllm(primary, "newsroom-judge"), claude(backup)]})
    primary.on_chat("{broken")
    backup.on_chat(GOOD)
    with pytest.raises(LLMOutputInvalid) as info:
        await gw.complete_json("judge", MSGS, Verdict)
    verdict, res = await gw.complete_json("judge", MSGS, Verdict, start_at=info.value.result.route_index + 1)
    assert res.provider == "anthropic" and verdict.technical_accuracy == 4
    _, res = await gw.complete_json("judge", MSGS, Verdict, exclude_models={"newsroom-judge"})
    assert res.model == "claude-sonnet-4-6" and len(primary.requests) == 1


# --- adapter presence on /v1/models --------------------------------------------------------------

async def test_adapter_missing_fallback_policy(primary, backup, caplog):
    gw, _ = make_gateway({"writer": [vllm(primary, "newsroom-writer-r32"), llamacpp(backup)]},
                         llm_adapter_missing="fallback")
    backup.on_chat("local draft")
    with caplog.at_level(logging.WARNING, logger="newsroom.llm"):
        report = await gw.check_adapters()
        res = await gw.complete_text("writer", MSGS)
    assert res.route_index == 1 and res.text == "local draft"
    assert primary.requests == []  # never asked a server that lacks the adapter
    assert "newsroom-writer-r32" in caplog.text and "not listed" in caplog.text
    ep = report[f"vllm@{primary.base_url}"]
    assert ep["reachable"] and "newsroom-writer" in ep["models"]
    assert ep["routes"][0]["adapter_present"] is False


async def test_adapter_missing_error_policy(primary, backup):
    gw, _ = make_gateway({"writer": [vllm(primary, "newsroom-writer-r32"), llamacpp(backup)]},
                         llm_adapter_missing="error")
    with pytest.raises(LLMAdapterMissing, match="newsroom-writer-r32.*--lora-modules"):
        await gw.check_adapters()
    with pytest.raises(LLMAdapterMissing):
        await gw.complete_text("writer", MSGS)
    assert primary.requests == [] and backup.requests == []


async def test_adapter_listed_is_served_and_listing_is_cached(primary):
    gw, _ = make_gateway({"writer": [vllm(primary)]})
    for _ in range(3):
        await gw.complete_text("writer", MSGS)
    assert primary.model_list_requests == 1 and len(primary.requests) == 3


async def test_health_reports_endpoints_models_and_breakers(primary, backup):
    gw, _ = make_gateway({"writer": [vllm(primary), llamacpp(backup)],
                          "judge": [claude(backup), {"provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
                                                     "model": "j"}]})
    report = await gw.health(timeout_s=2)
    assert report[f"vllm@{primary.base_url}"]["routes"][0]["adapter_present"] is True
    assert report[f"anthropic@{backup.anthropic_base_url}"]["reachable"] is True
    down = report["vllm@http://127.0.0.1:9/v1"]
    assert down["reachable"] is False and down["error"] and down["breaker"]["state"] == "closed"


# --- cost, recording, observers -----------------------------------------------------------------

async def test_costs_add_up_per_post_in_the_database(db, primary, backup):
    from storage.posts import create_post, get_post, llm_calls_for, usage_for

    thread_id = f"t-cost-{uuid.uuid4().hex[:8]}"
    await create_post(db, thread_id, "How GQA shrinks the KV cache", "tester")
    # The default recorder: storage.db.get_database() + storage.posts.record_llm_call.
    settings = load_settings(
        llm_retry_initial_s=0.01, anthropic_api_key="sk-test",
        routes_json=json.dumps({"writer": [vllm(primary)], "judge": [claude(backup)]}))
    gw = LLMGateway(settings)
    primary.script(Fault.server_error(500))  # one failed attempt: recorded, 0 tokens
    primary.on_chat(Reply(text="draft", tokens_in=1200, tokens_out=500))
    backup.on_chat(Reply(text="", tool_input=GOOD, tokens_in=1000, tokens_out=200))

    w = await gw.complete_text("writer", MSGS, thread_id=thread_id)
    j1 = await gw.complete_json("judge", MSGS, Verdict, thread_id=thread_id)
    j2 = await gw.complete_json("judge", MSGS, Verdict, thread_id=thread_id)
    assert w.cost_usd == 0.0  # a local vLLM adapter costs nothing by default
    # claude-sonnet-4 at $3 / $15 per 1M tokens: 1000 * 3e-6 + 200 * 15e-6
    assert j1[1].cost_usd == pytest.approx(0.006) and j2[1].cost_usd == pytest.approx(0.006)

    post = await get_post(db, thread_id)
    assert post["tokens_in"] == 1200 + 2 * 1000 and post["tokens_out"] == 500 + 2 * 200
    assert post["cost_usd"] == Decimal("0.012000") and post["llm_calls"] == 4
    usage = await usage_for(db, thread_id)
    assert usage["calls"] == 4 and usage["cost_usd"] == Decimal("0.012000")
    rows = await llm_calls_for(db, thread_id)
    assert [(r["role"], r["outcome"]) for r in rows] == [
        ("writer", "error"), ("writer", "ok"), ("judge", "ok"), ("judge", "ok")]
    assert rows[2]["provider"] == "anthropic" and rows[2]["model"] == "claude-sonnet-4-6"
    await gw.aclose()


async def test_observer_sees_every_attempt_and_its_failures_do_not_break_calls(primary):
    events: list[LLMCallEvent] = []

    async def observer(ev: LLMCallEvent) -> None:
        events.append(ev)

    def broken_observer(ev: LLMCallEvent) -> None:
        raise RuntimeError("tracing host down")

    gw, _ = make_gateway({"writer": [vllm(primary)]})
    gw.add_observer(observer)
    gw.add_observer(broken_observer)
    primary.script(Fault.server_error(500), Reply(text="hi", tokens_in=10, tokens_out=3))
    res = await gw.complete_text("writer", MSGS, thread_id="t-obs")
    assert res.text == "hi"
    assert [(e.outcome, e.attempt, e.tokens_out) for e in events] == [("error", 1, 0), ("ok", 2, 3)]
    assert events[1].messages == MSGS and events[1].output == "hi" and events[1].thread_id == "t-obs"
    assert events[1].ended_at >= events[1].started_at


async def test_recorder_failure_does_not_lose_the_reply(primary):
    async def failing_recorder(**row):
        raise ConnectionError("db down")

    gw, _ = make_gateway({"writer": [vllm(primary)]}, recorder=failing_recorder)
    primary.on_chat("kept")
    assert (await gw.complete_text("writer", MSGS)).text == "kept"


# --- configuration ---------------------------------------------------------------------------------

def test_default_routes_follow_the_plain_settings():
    s = load_settings(llm_provider="vllm", llm_base_url="http://vllm:8000/v1", writer_model="newsroom-writer",
                      judge_model="newsroom-judge", anthropic_api_key=None)
    r = routes_from_settings(s)
    assert [(x.provider, x.model) for x in r["writer"]] == [("vllm", "newsroom-writer")]
    assert [(x.provider, x.model) for x in r["judge"]] == [("vllm", "newsroom-judge")]
    assert r["writer"][0].must_be_listed and r["hyde"][0].model == "newsroom-writer"
    s = load_settings(anthropic_api_key="sk", anthropic_judge_model="claude-x", hyde_model="hy")
    r = routes_from_settings(s)
    assert [x.provider for x in r["judge"]] == ["anthropic", "llamacpp"]
    assert r["judge"][0].model == "claude-x" and r["hyde"][0].model == "hy"
    assert not r["writer"][0].must_be_listed  # llama.cpp echoes any name


def test_routes_json_overrides_and_validation():
    routes = {"writer": [{"provider": "vllm", "base_url": "http://v/v1", "model": "newsroom-writer"},
                         {"provider": "vllm", "base_url": "http://v/v1", "model": "meta-llama/Llama-3.1-8B-Instruct"},
                         {"provider": "anthropic", "model": "claude-sonnet-4-6"},
                         {"provider": "llamacpp", "base_url": "http://127.0.0.1:8765/v1", "model": "newsroom-writer"}]}
    r = routes_from_settings(load_settings(routes_json=json.dumps(routes)))
    assert [x.provider for x in r["writer"]] == ["vllm", "vllm", "anthropic", "llamacpp"]
    assert r["judge"][0].model == "newsroom-judge"  # unnamed roles keep their defaults
    with pytest.raises(ConfigError, match="unknown roles"):
        routes_from_settings(load_settings(routes_json='{"poet": [{"provider": "vllm", "model": "x"}]}'))
    with pytest.raises(ConfigError, match="NEWSROOM_ROUTES_JSON"):
        routes_from_settings(load_settings(routes_json='{"writer": [{"provider": "bard", "model": "x"}]}'))
    same = {"writer": [{"provider": "vllm", "base_url": "http://v/v1", "model": "m"}],
            "judge": [{"provider": "vllm", "base_url": "http://v/v1", "model": "m"}]}
    with pytest.raises(ConfigError, match="judge must differ"):
        routes_from_settings(load_settings(routes_json=json.dumps(same)))


async def test_anthropic_route_without_key_is_skipped(backup):
    gw, _ = make_gateway({"judge": [claude(backup), llamacpp(backup, "local-judge")]}, anthropic_api_key=None)
    backup.on_chat(GOOD)
    _, res = await gw.complete_json("judge", MSGS, Verdict)
    assert res.provider == "llamacpp" and all(r.api == "openai" for r in backup.requests)


def test_price_table_exact_prefix_override_and_local_zero():
    table = {"claude-sonnet-4": (3.0, 15.0), "claude-sonnet-4-5": (3.3, 16.5), "gpt-4o": (2.5, 10.0)}
    assert price_for("claude-sonnet-4-6", table) == (3.0, 15.0)
    assert price_for("claude-sonnet-4-5-20250929", table) == (3.3, 16.5)  # longest prefix wins
    assert price_for("newsroom-writer", table) == (0.0, 0.0)
    s = load_settings(llm_prices_json='{"newsroom-writer": [0.1, 0.2]}')
    gw = LLMGateway(s, recorder=None)
    assert price_for("newsroom-writer", gw.prices) == (0.1, 0.2)
    assert Route(provider="vllm", model="x", price_in=1.0).price_in == 1.0


async def test_get_gateway_is_one_per_loop():
    assert get_gateway() is get_gateway()


# --- the breaker on its own (fake clock) -----------------------------------------------------------

def test_breaker_state_machine():
    now = [0.0]
    b = CircuitBreaker("ep", failure_threshold=3, cooldown_s=30.0, clock=lambda: now[0])
    for _ in range(2):
        b.acquire()
        b.failure()
    b.acquire()
    b.success()  # a success resets the consecutive count
    for _ in range(2):
        b.acquire()
        b.failure()
    assert b.state is BreakerState.CLOSED
    b.acquire()
    b.failure()
    assert b.state is BreakerState.OPEN
    with pytest.raises(BreakerOpen):
        b.acquire()
    now[0] = 29.9
    with pytest.raises(BreakerOpen):
        b.acquire()
    now[0] = 30.0
    assert b.state is BreakerState.HALF_OPEN
    b.acquire()  # the one probe
    with pytest.raises(BreakerOpen):
        b.acquire()  # a second caller while the probe is in flight
    b.release()  # e.g. the probe got a 429: says nothing about health, slot freed
    b.acquire()
    b.failure()  # probe failed: open again for a full cool-down
    assert b.state is BreakerState.OPEN and b.opened_count == 2
    now[0] = 60.0
    b.acquire()
    b.success()
    assert b.state is BreakerState.CLOSED and b.snapshot()["consecutive_failures"] == 0


# --- deploy/vllm readiness check and the throughput benchmark (smoke) ------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("adapter, expected_rc", [("newsroom-writer", 0), ("newsroom-writer-r32", 1)])
def test_vllm_readiness_script_requires_the_adapter_listed(primary, adapter, expected_rc):
    import subprocess

    proc = subprocess.run(["bash", str(REPO / "deploy/vllm/readiness.sh"), primary.base_url, adapter, "2"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == expected_rc, proc.stderr
    if expected_rc == 1:
        assert "does not list newsroom-writer-r32" in proc.stderr and "--lora-modules" in proc.stderr


def test_vllm_readiness_script_no_server():
    import subprocess

    proc = subprocess.run(["bash", str(REPO / "deploy/vllm/readiness.sh"), "http://127.0.0.1:9/v1", "x", "1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "no answer" in proc.stderr


def test_gateway_throughput_bench_prints_one_json_line_last():
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "evals.bench.gateway_throughput", "--scripted", "--no-db", "--requests", "2",
         "--max-tokens", "20", "--token-delay-s", "0.005"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bench"] == "gateway_throughput" and result["server"].startswith("scripted")
    assert result["direct_tok_s"] > 0 and result["gateway_tok_s"] > 0 and 0.5 < result["ratio"] < 1.5
