"""The LLM gateway: every model call of the engine goes through here.

    gw = get_gateway()
    res = await gw.complete_text("writer", messages, thread_id=tid)
    verdict, res = await gw.complete_json("judge", messages, EditorVerdict, thread_id=tid)

Per role, an ordered list of routes (provider + endpoint + model) is tried in turn. On each
route: a circuit breaker per endpoint (an open one sends the call to the next route at once),
tenacity retries on retryable errors only (connect errors, timeouts, 429 honouring Retry-After,
5xx), a per-attempt timeout and an optional overall deadline. Structured output is requested in
each provider's own form (vLLM/OpenAI: response_format json_schema; llama.cpp: json_object +
schema; Anthropic: a forced tool call) and validated with pydantic; a reply that does not
validate raises LLMOutputInvalid and is never retried or rerouted here (the Editor decides).
Every HTTP attempt, success or failure, is recorded in llm_calls (tokens, cost, latency) and
added to the post's running totals, and handed to the optional observers (tracing seam).

Tracing seam: gw.add_observer(fn) — fn(LLMCallEvent) (sync or async) is awaited inline after
every attempt, in the caller's task, so contextvars (an OpenTelemetry/Langfuse current span) are
the desk's: a generation created there nests under the desk span. Observer errors are logged,
never raised. A desk deadline: complete_*(..., deadline_s=S) bounds attempts, timeouts and
backoffs over all routes. Anthropic calls send no temperature (this SDK generation dropped it).

Picking "the next judge model" (for the Editor after an invalid verdict):
    await gw.complete_json("judge", msgs, EditorVerdict, start_at=res.route_index + 1)
or  await gw.complete_json("judge", msgs, EditorVerdict, exclude_models={res.model})
"""
from __future__ import annotations

import asyncio
import copy
import email.utils
import functools
import inspect
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

import anthropic
import openai
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from config import ConfigError, Settings, get_settings
from tools.breaker import BreakerOpen, CircuitBreaker

log = logging.getLogger("newsroom.llm")

Role = Literal["writer", "judge", "hyde", "researcher"]
ROLES: tuple[str, ...] = ("writer", "judge", "hyde", "researcher")
ProviderKind = Literal["vllm", "llamacpp", "openai", "anthropic"]
OPENAI_COMPATIBLE = frozenset({"vllm", "llamacpp", "openai"})
ANTHROPIC_DEFAULT_URL = "https://api.anthropic.com"
M = TypeVar("M", bound=BaseModel)


# --- routes --------------------------------------------------------------------------------

class Route(BaseModel):
    """One way to serve a role: a provider kind at an endpoint, with a model name."""

    model_config = ConfigDict(extra="forbid")

    provider: ProviderKind
    model: str
    base_url: str | None = Field(default=None, description="None = the provider's default from settings")
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(default=None, description="read the key from this env var instead")
    require_listed: bool | None = Field(
        default=None,
        description="the model must appear on GET /v1/models (default: yes for vllm, whose LoRA "
        "adapters are listed; no for llamacpp, which echoes any model name anyway)",
    )
    follow_registry: bool = Field(
        default=False,
        description="the model is an adapter family: serve its promoted adapter from the adapter registry "
        "(newsroom promote-adapter) when one is promoted and listed, else `model` itself",
    )
    price_in: float | None = Field(default=None, ge=0, description="USD per 1M input tokens (overrides table)")
    price_out: float | None = Field(default=None, ge=0, description="USD per 1M output tokens")

    @property
    def must_be_listed(self) -> bool:
        return self.require_listed if self.require_listed is not None else self.provider == "vllm"

    def endpoint(self, settings: Settings) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.provider == "anthropic":
            return (settings.anthropic_base_url or ANTHROPIC_DEFAULT_URL).rstrip("/")
        return settings.llm_base_url.rstrip("/")

    def key(self, settings: Settings) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        if self.provider == "anthropic":
            return settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
        return settings.llm_api_key.get_secret_value()

    def label(self, settings: Settings) -> str:
        return f"{self.provider}:{self.model}@{self.endpoint(settings)}"


def default_routes(settings: Settings) -> dict[str, list[Route]]:
    """Routes from the plain settings (DESIGN.md): writer on the local/vLLM endpoint, judge on
    Anthropic when a key is set (then the local judge model as fallback), HyDE on the HyDE or
    writer model."""
    local = settings.llm_provider
    writer = [Route(provider=local, base_url=settings.llm_base_url, model=settings.writer_model,
                    follow_registry=settings.writer_adapter_registry)]
    local_judge = Route(
        provider=(settings.judge_provider if settings.judge_provider not in (None, "anthropic") else local),
        base_url=settings.judge_url, model=settings.judge_model,
    )
    if settings.effective_judge_provider == "anthropic":
        judge = [Route(provider="anthropic", model=settings.anthropic_judge_model)]
        if settings.judge_model != settings.writer_model or settings.judge_url != settings.llm_base_url:
            judge.append(local_judge)
    else:
        judge = [local_judge]
    hyde = [Route(provider=local, base_url=settings.llm_base_url, model=settings.hyde_model or settings.writer_model)]
    researcher = [Route(provider=local, base_url=settings.llm_base_url, model=settings.writer_model)]
    return {"writer": writer, "judge": judge, "hyde": hyde, "researcher": researcher}


_ROUTES_ADAPTER = TypeAdapter(dict[str, list[Route]])


def routes_from_settings(settings: Settings) -> dict[str, list[Route]]:
    """default_routes overlaid with NEWSROOM_ROUTES_JSON (roles named there replace the default)."""
    routes = default_routes(settings)
    if settings.routes_json:
        try:
            custom = _ROUTES_ADAPTER.validate_json(settings.routes_json)
        except ValidationError as err:
            raise ConfigError(f"invalid NEWSROOM_ROUTES_JSON: {err}") from None
        unknown = set(custom) - set(ROLES)
        if unknown:
            raise ConfigError(f"NEWSROOM_ROUTES_JSON: unknown roles {sorted(unknown)}; known: {list(ROLES)}")
        for role, chain in custom.items():
            if not chain:
                raise ConfigError(f"NEWSROOM_ROUTES_JSON: role {role!r} has no routes")
            routes[role] = chain
    # The Editor must not grade its own writer's output: refuse a judge route equal to the first writer route.
    w = routes["writer"][0]
    for j in routes["judge"]:
        if j.model == w.model and j.endpoint(settings) == w.endpoint(settings):
            raise ConfigError(f"judge route {j.label(settings)} is the writer's model: the judge must differ")
    return routes


# --- prices --------------------------------------------------------------------------------

# USD per 1M tokens (input, output). Local models (vLLM adapter, llama.cpp) cost 0 unless listed.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4": (15.0, 75.0),  # 4 and 4.1; newer Opus ids not listed here fall back to this (an over-estimate)
    "claude-opus-4-5": (5.0, 25.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-haiku-4": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4o": (2.5, 10.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1": (2.0, 8.0),
}
_PRICES_ADAPTER = TypeAdapter(dict[str, tuple[float, float]])


def price_table(settings: Settings) -> dict[str, tuple[float, float]]:
    table = dict(DEFAULT_PRICES)
    if settings.llm_prices_json:
        try:
            table.update(_PRICES_ADAPTER.validate_json(settings.llm_prices_json))
        except ValidationError as err:
            raise ConfigError(f"invalid NEWSROOM_LLM_PRICES_JSON: {err}") from None
    return table


def price_for(model: str, table: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Exact name first, then the longest table key the model name starts with (dated ids)."""
    if model in table:
        return table[model]
    best = max((k for k in table if model.startswith(k)), key=len, default=None)
    return table[best] if best else (0.0, 0.0)


def cost_usd(route: Route, model: str, tokens_in: int, tokens_out: int, table: dict[str, tuple[float, float]]) -> float:
    p_in, p_out = price_for(model, table)
    if route.price_in is not None:
        p_in = route.price_in
    if route.price_out is not None:
        p_out = route.price_out
    return (tokens_in * p_in + tokens_out * p_out) / 1_000_000


def role_prices(settings: Settings) -> dict[str, tuple[str, float, float]]:
    """Per role, (model, USD per 1M input tokens, per 1M output tokens) of its first route, as
    cost_usd would charge it: what a pre-run estimate prices each call at."""
    table = price_table(settings)
    out: dict[str, tuple[str, float, float]] = {}
    for role, chain in routes_from_settings(settings).items():
        route = chain[0]
        p_in, p_out = price_for(route.model, table)
        out[role] = (route.model, route.price_in if route.price_in is not None else p_in,
                     route.price_out if route.price_out is not None else p_out)
    return out


# --- results and errors ----------------------------------------------------------------------

class LLMResult(BaseModel):
    text: str
    model: str
    provider: str
    endpoint: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_ms: int = Field(default=0, description="whole call, retries and fallbacks included")
    attempts: int = Field(default=1, description="HTTP attempts over all routes tried")
    role: str = ""
    route_index: int = Field(default=0, description="index of the serving route in the role's chain")
    finish_reason: str | None = None


class LLMError(RuntimeError):
    pass


class LLMOutputInvalid(LLMError):
    """The model answered, but its reply is not valid for the schema. The call is recorded."""

    def __init__(self, raw_text: str, errors: list[dict] | str, result: LLMResult):
        super().__init__(raw_text, errors)
        self.raw_text, self.errors, self.result = raw_text, errors, result

    def __str__(self) -> str:
        return f"{self.result.model or 'the model'} returned output that does not validate: {_short(self.errors)}"


@dataclass
class RouteFailure:
    route: str
    reason: str


class LLMUnavailable(LLMError):
    """Every route of the role failed."""

    def __init__(self, role: str, failures: list[RouteFailure]):
        self.role, self.failures = role, failures
        detail = "; ".join(f"{f.route}: {f.reason}" for f in failures) or "no route configured"
        super().__init__(f"no LLM route served role {role!r}: {detail}")


class LLMAdapterMissing(ConfigError):
    """A route's model (a LoRA adapter's served name) is not listed on its endpoint's /v1/models
    and NEWSROOM_LLM_ADAPTER_MISSING=error."""


class LLMTimeout(LLMError):
    pass


class _DeadlineExceeded(LLMError):
    pass


class _ModelNotListed(LLMError):
    pass


def _short(obj: Any, n: int = 300) -> str:
    s = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return s if len(s) <= n else s[:n] + "..."


# --- error classification ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Verdict:
    retryable: bool
    endpoint_failure: bool  # counts toward the endpoint's breaker
    retry_after_s: float | None = None


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def classify(exc: BaseException) -> _Verdict:
    if isinstance(exc, (LLMTimeout, openai.APITimeoutError, anthropic.APITimeoutError)):
        return _Verdict(True, True)
    if isinstance(exc, (openai.APIConnectionError, anthropic.APIConnectionError)):
        return _Verdict(True, True)
    if isinstance(exc, (openai.APIStatusError, anthropic.APIStatusError)):
        status = exc.status_code
        if status == 429:
            # The endpoint is alive and asks us to slow down: retry after its word, no breaker count.
            return _Verdict(True, False, _retry_after(exc.response))
        if status == 408 or status >= 500:
            return _Verdict(True, True, _retry_after(exc.response))
        return _Verdict(False, False)  # 400/401/404/422: this route cannot serve, try the next
    if isinstance(exc, (openai.APIResponseValidationError, anthropic.APIResponseValidationError)):
        return _Verdict(False, True)
    return _Verdict(False, False)


# --- observer seam (tracing) -----------------------------------------------------------------

@dataclass
class LLMCallEvent:
    """One HTTP attempt, handed to observers (e.g. a Langfuse generation)."""

    role: str
    thread_id: str | None
    provider: str
    endpoint: str
    model: str
    messages: list[dict]
    output: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: int
    outcome: str  # ok | invalid | error
    error: str | None
    started_at: datetime
    ended_at: datetime
    attempt: int
    route_index: int
    structured: str | None = None  # schema name for complete_json
    metadata: dict = field(default_factory=dict)


Observer = Callable[[LLMCallEvent], Awaitable[None] | None]
Recorder = Callable[..., Awaitable[None]]


async def _promoted_in_db(family: str) -> str | None:
    from storage.connect import get_database
    from storage.training import promoted_adapter

    row = await promoted_adapter(await get_database(), family)
    return row["name"] if row else None


async def _record_in_db(**row) -> None:
    from storage.connect import get_database
    from storage.posts import record_llm_call

    await record_llm_call(await get_database(), **row)


# --- provider calls ------------------------------------------------------------------------

@dataclass
class _Reply:
    text: str
    model: str
    tokens_in: int
    tokens_out: int
    finish_reason: str | None


def _estimate_tokens(text: str) -> int:
    # Only when a server reports no usage: ~4 characters per token.
    return max(1, len(text) // 4) if text else 0


@functools.lru_cache(maxsize=64)
def _cached_json_schema(schema: type) -> dict:
    return schema.model_json_schema()


def _json_schema_of(schema: type) -> dict:
    # pydantic regenerates the schema on every call (~1 ms of CPU per LLM call under load): cache
    # it per model class; a deep copy so no SDK can mutate the cached one.
    return copy.deepcopy(_cached_json_schema(schema))


def _openai_response_format(provider: str, name: str, schema: dict) -> dict:
    if provider == "llamacpp":
        # llama.cpp refuses json_schema (HTTP 500) and turns json_object + schema into a grammar.
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": provider == "vllm"}}


def _anthropic_messages(messages: list[dict]) -> tuple[str | None, list[dict]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
    rest: list[dict] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if rest and rest[-1]["role"] == m["role"]:  # data blocks are consecutive user messages: one turn
            rest[-1] = {"role": m["role"], "content": f"{rest[-1]['content']}\n\n{m['content']}"}
        else:
            rest.append({"role": m["role"], "content": m["content"]})
    if not rest or rest[0]["role"] != "user":
        rest.insert(0, {"role": "user", "content": "Go on."})
    return system, rest


def _tool_name(schema_name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", f"submit_{schema_name}")[:64]


# --- the gateway ---------------------------------------------------------------------------

class LLMGateway:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        routes: dict[str, list[Route]] | None = None,
        recorder: Recorder | None = _record_in_db,
        observers: Sequence[Observer] = (),
        clock: Callable[[], float] = time.monotonic,
        breakers: dict[str, CircuitBreaker] | None = None,
        registry: Callable[[str], Awaitable[str | None]] | None = _promoted_in_db,
    ):
        self.settings = settings or get_settings()
        self.routes: dict[str, list[Route]] = routes if routes is not None else routes_from_settings(self.settings)
        self.prices = price_table(self.settings)
        self._recorder = recorder
        self._observers: list[Observer] = list(observers)
        self._clock = clock
        # Shared by the gateways of one process (get_gateway passes _SHARED_BREAKERS) so an
        # endpoint's health is one fact, whichever event loop a run happens to use.
        self._breakers: dict[str, CircuitBreaker] = breakers if breakers is not None else {}
        self._openai_clients: dict[tuple[str, str | None], openai.AsyncOpenAI] = {}
        self._anthropic_clients: dict[tuple[str, str | None], anthropic.AsyncAnthropic] = {}
        self._listed: dict[str, tuple[float, set[str]]] = {}
        self._registry = registry
        self._promoted: dict[str, tuple[float, str | None]] = {}
        self._listing_locks: dict[str, asyncio.Lock] = {}

    # -- public API ------------------------------------------------------------------------

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    async def complete_text(
        self, role: str, messages: list[dict], *, thread_id: str | None = None, max_tokens: int | None = None,
        temperature: float = 0.7, start_at: int = 0, exclude_models: Collection[str] = (),
        deadline_s: float | None = None,
    ) -> LLMResult:
        """Free text from the first route of `role` that serves. Raises LLMUnavailable."""
        result, _ = await self._complete(role, messages, None, thread_id, max_tokens, temperature,
                                         start_at, exclude_models, deadline_s)
        return result

    async def complete_json(
        self, role: str, messages: list[dict], schema: type[M], *, thread_id: str | None = None,
        max_tokens: int | None = None, temperature: float = 0.0, start_at: int = 0,
        exclude_models: Collection[str] = (), deadline_s: float | None = None,
    ) -> tuple[M, LLMResult]:
        """A validated `schema` instance, requested in the provider's structured-output form.
        Raises LLMOutputInvalid (never retried or rerouted here) or LLMUnavailable."""
        result, parsed = await self._complete(role, messages, schema, thread_id, max_tokens, temperature,
                                              start_at, exclude_models, deadline_s)
        return parsed, result

    def breaker_states(self) -> dict[str, dict]:
        return {name: b.snapshot() for name, b in sorted(self._breakers.items())}

    def route_labels(self) -> dict[str, list[str]]:
        return {role: [r.label(self.settings) for r in chain] for role, chain in self.routes.items()}

    async def health(self, *, timeout_s: float = 5.0) -> dict[str, dict]:
        """Per endpoint: reachable, models listed, each route's model present, breaker state."""
        endpoints: dict[str, dict] = {}
        for role, chain in self.routes.items():
            for route in chain:
                ep = self._endpoint_key(route)
                info = endpoints.setdefault(ep, {"provider": route.provider, "base_url": route.endpoint(self.settings),
                                                 "routes": []})
                info["routes"].append({"role": role, "model": route.model, "require_listed": route.must_be_listed})
        for ep, info in endpoints.items():
            route = next(r for chain in self.routes.values() for r in chain if self._endpoint_key(r) == ep)
            try:
                models = await self._list_models(route, timeout_s=timeout_s, refresh=True)
                info.update(reachable=True, models=sorted(models), error=None)
            except Exception as exc:  # noqa: BLE001 - health reports, never raises
                info.update(reachable=False, models=[], error=f"{type(exc).__name__}: {_short(str(exc), 200)}")
                models = None
            for r in info["routes"]:
                r["listed"] = None if models is None else r["model"] in models
                r["adapter_present"] = r["listed"] if r["require_listed"] else None
            info["breaker"] = self._breaker(ep).snapshot()
        return endpoints

    async def check_adapters(self) -> dict[str, dict]:
        """Start-up check: every route that must be listed is listed on its endpoint's /v1/models.
        Missing -> LLMAdapterMissing (policy `error`) or a logged warning (policy `fallback`,
        the route is then skipped by calls). Returns health()."""
        report = await self.health()
        missing = [(ep, r["model"]) for ep, info in report.items() for r in info["routes"]
                   if r["require_listed"] and r["listed"] is False]
        for ep, model in missing:
            msg = (f"model {model!r} is not listed on {report[ep]['base_url']}/models "
                   f"(listed: {report[ep]['models']}); for vLLM start it with --enable-lora "
                   f"--lora-modules {model}=/path/to/adapter")
            if self.settings.llm_adapter_missing == "error":
                raise LLMAdapterMissing(msg)
            log.warning("%s; falling back to the next route", msg)
        return report

    async def aclose(self) -> None:
        for c in self._openai_clients.values():
            await c.close()
        for c in self._anthropic_clients.values():
            await c.close()
        self._openai_clients.clear()
        self._anthropic_clients.clear()

    # -- internals -------------------------------------------------------------------------

    def _endpoint_key(self, route: Route) -> str:
        return f"{route.provider}@{route.endpoint(self.settings)}"

    def _breaker(self, key: str) -> CircuitBreaker:
        b = self._breakers.get(key)
        if b is None:
            b = self._breakers[key] = CircuitBreaker(
                key, self.settings.breaker_failure_threshold, self.settings.breaker_cooldown_s, self._clock)
        return b

    def _openai(self, route: Route) -> openai.AsyncOpenAI:
        k = (route.endpoint(self.settings), route.key(self.settings))
        c = self._openai_clients.get(k)
        if c is None:
            # SDK retries off: tenacity here owns retries, so breakers and Retry-After see every attempt.
            c = self._openai_clients[k] = openai.AsyncOpenAI(
                base_url=k[0], api_key=k[1] or "not-needed", max_retries=0, timeout=self.settings.llm_timeout_s)
        return c

    def _anthropic(self, route: Route) -> anthropic.AsyncAnthropic:
        k = (route.endpoint(self.settings), route.key(self.settings))
        c = self._anthropic_clients.get(k)
        if c is None:
            c = self._anthropic_clients[k] = anthropic.AsyncAnthropic(
                base_url=k[0], api_key=k[1], max_retries=0, timeout=self.settings.llm_timeout_s)
        return c

    async def _list_models(self, route: Route, *, timeout_s: float, refresh: bool = False) -> set[str]:
        ep = self._endpoint_key(route)
        cached = self._listed.get(ep)
        if cached and not refresh and self._clock() - cached[0] < self.settings.llm_models_cache_s:
            return cached[1]
        async with self._listing_locks.setdefault(ep, asyncio.Lock()):
            cached = self._listed.get(ep)
            if cached and not refresh and self._clock() - cached[0] < self.settings.llm_models_cache_s:
                return cached[1]
            if route.provider == "anthropic":
                if not route.key(self.settings):
                    raise LLMError("no ANTHROPIC_API_KEY")
                page = await self._anthropic(route).with_options(timeout=timeout_s).models.list()
            else:
                page = await self._openai(route).with_options(timeout=timeout_s).models.list()
            models = {m.id for m in page.data}
            self._listed[ep] = (self._clock(), models)
            return models

    async def _registry_route(self, route: Route) -> Route:
        """The route with its model replaced by the family's promoted adapter (cached like a
        listing), when one is promoted and the endpoint lists it; else the route as it is."""
        family = route.model
        cached = self._promoted.get(family)
        if cached and self._clock() - cached[0] < self.settings.llm_models_cache_s:
            promoted = cached[1]
        else:
            try:
                promoted = await self._registry(family) if self._registry else None
            except Exception as exc:  # noqa: BLE001 - no registry (no database): serve the family name
                log.warning("adapter registry unavailable (%s): the writer uses %s", exc, family)
                promoted = None
            self._promoted[family] = (self._clock(), promoted)
        if not promoted or promoted == family:
            return route
        try:
            listed = await self._list_models(route, timeout_s=min(5.0, self.settings.llm_timeout_s))
        except Exception:  # noqa: BLE001 - unreachable: the call itself will fail and count
            listed = {promoted}
        if promoted not in listed:
            log.warning("promoted adapter %s is not loaded on %s (listed: %s): serving %s; "
                        "load it with `newsroom promote-adapter --load-only %s`",
                        promoted, route.endpoint(self.settings), sorted(listed), family, promoted)
            return route
        return route.model_copy(update={"model": promoted, "follow_registry": False})

    def forget_promoted(self) -> None:
        """Read the registry again on the next call (after a promotion in this process)."""
        self._promoted.clear()

    async def _ensure_listed(self, route: Route) -> None:
        if not route.must_be_listed:
            return
        try:
            models = await self._list_models(route, timeout_s=min(5.0, self.settings.llm_timeout_s))
        except Exception as exc:  # noqa: BLE001 - unreachable: let the call itself fail and count
            log.debug("could not list models on %s: %s", route.endpoint(self.settings), exc)
            return
        if route.model not in models:
            msg = (f"model {route.model!r} is not listed on {route.endpoint(self.settings)}/models "
                   f"(listed: {sorted(models)})")
            if self.settings.llm_adapter_missing == "error":
                raise LLMAdapterMissing(msg)
            raise _ModelNotListed(msg)

    async def _complete(
        self, role: str, messages: list[dict], schema: type[BaseModel] | None, thread_id: str | None,
        max_tokens: int | None, temperature: float, start_at: int, exclude_models: Collection[str],
        deadline_s: float | None,
    ) -> tuple[LLMResult, BaseModel | None]:
        chain = self.routes.get(role)
        if chain is None:
            raise LLMError(f"unknown role {role!r}; known: {sorted(self.routes)}")
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        if max_tokens is None:
            max_tokens = self.settings.judge_max_tokens if role == "judge" else self.settings.writer_max_tokens
        t0 = self._clock()
        deadline = t0 + deadline_s if deadline_s is not None else None
        failures: list[RouteFailure] = []
        attempts = 0
        for index, route in enumerate(chain):
            if index < start_at or route.model in exclude_models:
                continue
            if route.follow_registry:
                route = await self._registry_route(route)
            label = route.label(self.settings)
            if route.provider == "anthropic" and not route.key(self.settings):
                failures.append(RouteFailure(label, "no ANTHROPIC_API_KEY"))
                continue
            try:
                await self._ensure_listed(route)
            except _ModelNotListed as exc:
                log.warning("%s; trying the next route for %s", exc, role)
                failures.append(RouteFailure(label, str(exc)))
                continue
            state = {"attempts": 0}
            try:
                reply = await self._call_with_retries(role, index, route, messages, schema, thread_id,
                                                      max_tokens, temperature, deadline, state)
            except (LLMOutputInvalid, LLMAdapterMissing):
                raise  # the model answered (badly) / the config is wrong: not for another route
            except Exception as exc:  # noqa: BLE001 - this route failed: record why, try the next
                attempts += state["attempts"]
                reason = f"{type(exc).__name__}: {_short(str(exc), 200)}"
                diagnosis = endpoint_diagnosis(route.endpoint(self.settings))
                failures.append(RouteFailure(label, f"{diagnosis} ({reason})" if diagnosis else reason))
                if isinstance(exc, _DeadlineExceeded):
                    break
                continue
            attempts += state["attempts"]
            result = LLMResult(
                text=reply.text, model=reply.model or route.model, provider=route.provider,
                endpoint=route.endpoint(self.settings), tokens_in=reply.tokens_in, tokens_out=reply.tokens_out,
                cost_usd=cost_usd(route, route.model, reply.tokens_in, reply.tokens_out, self.prices),
                latency_ms=int((self._clock() - t0) * 1000), attempts=attempts, role=role, route_index=index,
                finish_reason=reply.finish_reason,
            )
            if schema is None:
                return result, None
            return result, state["parsed"]
        raise LLMUnavailable(role, failures)

    async def _call_with_retries(
        self, role, index, route, messages, schema, thread_id, max_tokens, temperature, deadline, state,
    ) -> _Reply:
        s = self.settings
        backoff = wait_exponential_jitter(multiplier=s.llm_retry_initial_s, max=s.llm_retry_max_s,
                                          jitter=s.llm_retry_initial_s)

        def wait(retry_state) -> float:
            exc = retry_state.outcome.exception()
            ra = classify(exc).retry_after_s if exc else None
            delay = min(ra, s.llm_retry_after_max_s) if ra is not None else backoff(retry_state)
            if deadline is not None:
                delay = max(0.0, min(delay, deadline - self._clock()))
            return delay

        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(s.llm_max_attempts), wait=wait,
            retry=retry_if_exception(lambda e: classify(e).retryable), reraise=True,
        ):
            with attempt:
                return await self._attempt(role, index, route, messages, schema, thread_id, max_tokens,
                                           temperature, deadline, state)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, role, index, route, messages, schema, thread_id, max_tokens, temperature, deadline, state,
    ) -> _Reply:
        timeout = self.settings.llm_timeout_s
        if deadline is not None:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise _DeadlineExceeded("the call's deadline passed")
            timeout = min(timeout, remaining)
        breaker = self._breaker(self._endpoint_key(route))
        breaker.acquire()  # BreakerOpen: not retryable -> next route at once
        state["attempts"] += 1  # only requests that were sent count
        started_wall, started = datetime.now(timezone.utc), self._clock()
        reply: _Reply | None = None
        try:
            try:
                async with asyncio.timeout(timeout):
                    reply = await self._send(route, messages, schema, max_tokens, temperature, timeout)
            except TimeoutError as exc:
                raise LLMTimeout(f"no reply from {route.endpoint(self.settings)} within {timeout:.1f} s") from exc
        except BaseException as exc:
            verdict = classify(exc) if isinstance(exc, Exception) else _Verdict(False, False)
            if verdict.endpoint_failure:
                breaker.failure()
            else:
                breaker.release()
            if isinstance(exc, Exception):
                await self._emit(role, index, route, messages, thread_id, schema, started_wall, started, state,
                                 None, "error", f"{type(exc).__name__}: {exc}")
            raise
        breaker.success()
        if schema is None:
            await self._emit(role, index, route, messages, thread_id, schema, started_wall, started, state,
                             reply, "ok", None)
            return reply
        try:
            state["parsed"] = _parse(schema, reply.text)
        except LLMOutputInvalid as bad:
            await self._emit(role, index, route, messages, thread_id, schema, started_wall, started, state,
                             reply, "invalid", _short(bad.errors, 1000))
            bad.result = LLMResult(
                text=reply.text, model=reply.model or route.model, provider=route.provider,
                endpoint=route.endpoint(self.settings), tokens_in=reply.tokens_in, tokens_out=reply.tokens_out,
                cost_usd=cost_usd(route, route.model, reply.tokens_in, reply.tokens_out, self.prices),
                latency_ms=int((self._clock() - started) * 1000), attempts=state["attempts"], role=role,
                route_index=index, finish_reason=reply.finish_reason,
            )
            raise bad from None
        await self._emit(role, index, route, messages, thread_id, schema, started_wall, started, state,
                         reply, "ok", None)
        return reply

    async def _send(self, route, messages, schema, max_tokens, temperature, timeout) -> _Reply:
        name = schema.__name__ if schema else None
        json_schema = _json_schema_of(schema) if schema else None
        if route.provider == "anthropic":
            system, msgs = _anthropic_messages(messages)
            kwargs: dict[str, Any] = {"model": route.model, "max_tokens": max_tokens, "messages": msgs,
                                      "timeout": timeout}
            if system:
                kwargs["system"] = system
            if schema is not None:
                tool = _tool_name(name)
                kwargs["tools"] = [{"name": tool, "description": f"Submit the {name} as structured data.",
                                    "input_schema": json_schema}]
                kwargs["tool_choice"] = {"type": "tool", "name": tool}
            msg = await self._anthropic(route).messages.create(**kwargs)
            text = ""
            if schema is not None:
                block = next((b for b in msg.content if b.type == "tool_use"), None)
                text = json.dumps(block.input) if block is not None else ""
            if not text:
                text = "".join(b.text for b in msg.content if b.type == "text")
            usage = msg.usage
            return _Reply(text, msg.model, usage.input_tokens if usage else 0,
                          usage.output_tokens if usage else _estimate_tokens(text), msg.stop_reason)
        kwargs = {"model": route.model, "messages": messages, "max_tokens": max_tokens,
                  "temperature": temperature, "timeout": timeout}
        if schema is not None:
            kwargs["response_format"] = _openai_response_format(route.provider, name, json_schema)
        resp = await self._openai(route).chat.completions.create(**kwargs)
        if not resp.choices:
            raise openai.APIResponseValidationError  # pragma: no cover - servers always send one
        choice = resp.choices[0]
        text = choice.message.content or ""
        usage = resp.usage
        if usage is not None:
            t_in, t_out = usage.prompt_tokens or 0, usage.completion_tokens or 0
        else:
            t_in = _estimate_tokens("".join(m["content"] for m in messages))
            t_out = _estimate_tokens(text)
        # llama.cpp echoes any requested name: report the route's model, which is what we asked for.
        return _Reply(text, route.model, t_in, t_out, choice.finish_reason)

    async def _emit(self, role, index, route, messages, thread_id, schema, started_wall, started, state,
                    reply: _Reply | None, outcome: str, error: str | None) -> None:
        latency_ms = int((self._clock() - started) * 1000)
        t_in, t_out = (reply.tokens_in, reply.tokens_out) if reply else (0, 0)
        cost = cost_usd(route, route.model, t_in, t_out, self.prices)
        endpoint = route.endpoint(self.settings)
        if self._recorder is not None:
            try:
                await self._recorder(thread_id=thread_id, role=role, provider=route.provider, endpoint=endpoint,
                                     model=route.model, tokens_in=t_in, tokens_out=t_out, cost_usd=cost,
                                     latency_ms=latency_ms, outcome=outcome, error=error)
            except Exception:  # noqa: BLE001 - bookkeeping must not lose a paid-for reply
                log.exception("could not record an LLM call of role %s", role)
        if self._observers:
            event = LLMCallEvent(
                role=role, thread_id=thread_id, provider=route.provider, endpoint=endpoint, model=route.model,
                messages=messages, output=reply.text if reply else None, tokens_in=t_in, tokens_out=t_out,
                cost_usd=cost, latency_ms=latency_ms, outcome=outcome, error=error, started_at=started_wall,
                ended_at=datetime.now(timezone.utc), attempt=state["attempts"], route_index=index,
                structured=schema.__name__ if schema else None,
            )
            for obs in self._observers:
                try:
                    out = obs(event)
                    if inspect.isawaitable(out):
                        await out
                except Exception:  # noqa: BLE001 - tracing never fails a call
                    log.exception("LLM observer %r failed", obs)


def _unfenced(body: str) -> str:
    """A reply wrapped in a ```json fence, unwrapped (str methods: the regex form was quadratic
    on a reply of spaces)."""
    if len(body) >= 6 and body.startswith("```") and body.endswith("```"):
        inner = body[3:-3]
        return (inner[4:] if inner.startswith("json") else inner).strip()
    return body


def _parse(schema: type[M], text: str) -> M:
    body = _unfenced(text.strip())
    placeholder = LLMResult(text=text, model="", provider="", endpoint="")
    if not body:
        raise LLMOutputInvalid(text, "empty reply", placeholder)
    try:
        return schema.model_validate_json(body)
    except ValidationError as err:
        errors = json.loads(err.json(include_url=False))
    # Small local models put raw newlines inside JSON strings; that is a lexical slip, not a
    # different answer, so re-read leniently (strict=False) and validate the same model again.
    try:
        data = json.loads(body, strict=False)
    except ValueError:
        raise LLMOutputInvalid(text, errors, placeholder) from None
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise LLMOutputInvalid(text, json.loads(err.json(include_url=False)), placeholder) from None


def parse_structured(schema: type[M], text: str) -> M:
    """A model's raw reply read as `schema` exactly as complete_json reads it (raises LLMOutputInvalid)."""
    return _parse(schema, text)


# --- what a failed endpoint's owner knows ----------------------------------------------------------

# base URL -> a probe that explains a failure there (the on-demand local server: "its process died
# with SIGILL ..."), so the reason a post failed names the cause, not the circuit breaker it tripped.
_ENDPOINT_DIAGNOSTICS: dict[str, Callable[[], str | None]] = {}


def register_endpoint_diagnostic(base_url: str, probe: Callable[[], str | None]) -> Callable[[], None]:
    """Register `probe` for failures at base_url; returns the function that unregisters it."""
    key = base_url.rstrip("/")
    _ENDPOINT_DIAGNOSTICS[key] = probe

    def unregister() -> None:
        if _ENDPOINT_DIAGNOSTICS.get(key) is probe:
            del _ENDPOINT_DIAGNOSTICS[key]
    return unregister


def endpoint_diagnosis(base_url: str) -> str | None:
    probe = _ENDPOINT_DIAGNOSTICS.get(base_url.rstrip("/"))
    if probe is None:
        return None
    try:
        return probe()
    except Exception:  # noqa: BLE001 - a diagnosis must never replace the failure it explains
        log.debug("endpoint diagnostic for %s failed", base_url, exc_info=True)
        return None


# --- process-wide instance -----------------------------------------------------------------------

_GATEWAYS: dict[int, LLMGateway] = {}
_SHARED_BREAKERS: dict[str, CircuitBreaker] = {}


def get_gateway() -> LLMGateway:
    """The gateway for the running event loop (SDK clients are bound to a loop), built from
    get_settings(); breakers live as long as it does."""
    try:
        key = id(asyncio.get_running_loop())
    except RuntimeError:
        key = 0
    gw = _GATEWAYS.get(key)
    if gw is None:
        gw = _GATEWAYS[key] = LLMGateway(get_settings(), observers=_default_observers(), breakers=_SHARED_BREAKERS)
    return gw


def _default_observers() -> list[Observer]:
    from tools.tracing import llm_call_observer  # a Langfuse generation per call; None when tracing is off

    tracing = llm_call_observer()
    return [tracing] if tracing is not None else []


def reset_gateway() -> None:
    """Forget the process-wide gateways and breakers (tests, settings changes). Clients are left to the GC."""
    _GATEWAYS.clear()
    _SHARED_BREAKERS.clear()


__all__ = [
    "LLMGateway", "LLMResult", "LLMError", "LLMOutputInvalid", "LLMUnavailable", "LLMAdapterMissing", "LLMTimeout",
    "LLMCallEvent", "Route", "RouteFailure", "get_gateway", "reset_gateway", "routes_from_settings", "parse_structured",
    "default_routes", "price_for", "price_table", "role_prices", "cost_usd", "classify", "DEFAULT_PRICES", "ROLES",
]
