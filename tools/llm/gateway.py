"""The LLM gateway: every model call of the engine goes through here (tools/llm/shared.py builds
the process's one per event loop, with its observers).

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
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from config import Settings, get_settings
from tools.breaker import CircuitBreaker
from tools.llm.errors import (
    DeadlineExceeded,
    ErrorClass,
    LLMAdapterMissing,
    LLMError,
    LLMOutputInvalid,
    LLMResult,
    LLMTimeout,
    LLMUnavailable,
    ModelNotListed,
    RouteFailure,
    classify,
    short_text,
)
from tools.llm.parsing import _parse
from tools.llm.providers import ProviderClients, ProviderReply
from tools.llm.routes import Route, cost_usd, price_table, routes_from_settings

log = logging.getLogger("newsroom.llm")

M = TypeVar("M", bound=BaseModel)


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


@dataclass
class RouteCall:
    """One call of a role on one route of its chain: what each attempt sends, and what the
    attempts learn (how many were sent, the validated reply)."""

    role: str
    index: int  # the route's place in the role's chain
    route: Route
    messages: list[dict]
    schema: type[BaseModel] | None
    thread_id: str | None
    max_tokens: int
    temperature: float
    deadline: float | None  # on the gateway's clock; None = no overall deadline
    attempts: int = 0  # requests sent on this route (a breaker that refused one does not count)
    parsed: BaseModel | None = None


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
        self._clients = ProviderClients(self.settings)
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
                info.update(reachable=False, models=[], error=f"{type(exc).__name__}: {short_text(str(exc), 200)}")
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
        await self._clients.aclose()

    # -- internals -------------------------------------------------------------------------

    def _endpoint_key(self, route: Route) -> str:
        return f"{route.provider}@{route.endpoint(self.settings)}"

    def _breaker(self, key: str) -> CircuitBreaker:
        b = self._breakers.get(key)
        if b is None:
            b = self._breakers[key] = CircuitBreaker(
                key, self.settings.breaker_failure_threshold, self.settings.breaker_cooldown_s, self._clock)
        return b

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
                page = await self._clients.anthropic_client(route).with_options(timeout=timeout_s).models.list()
            else:
                page = await self._clients.openai_client(route).with_options(timeout=timeout_s).models.list()
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
            raise ModelNotListed(msg)

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
            except ModelNotListed as exc:
                log.warning("%s; trying the next route for %s", exc, role)
                failures.append(RouteFailure(label, str(exc)))
                continue
            call = RouteCall(role, index, route, messages, schema, thread_id, max_tokens, temperature, deadline)
            try:
                reply = await self._call_with_retries(call)
            except (LLMOutputInvalid, LLMAdapterMissing):
                raise  # the model answered (badly) / the config is wrong: not for another route
            except Exception as exc:  # noqa: BLE001 - this route failed: record why, try the next
                attempts += call.attempts
                reason = f"{type(exc).__name__}: {short_text(str(exc), 200)}"
                diagnosis = endpoint_diagnosis(route.endpoint(self.settings))
                failures.append(RouteFailure(label, f"{diagnosis} ({reason})" if diagnosis else reason))
                if isinstance(exc, DeadlineExceeded):
                    break
                continue
            attempts += call.attempts
            result = LLMResult(
                text=reply.text, model=reply.model or route.model, provider=route.provider,
                endpoint=route.endpoint(self.settings), tokens_in=reply.tokens_in, tokens_out=reply.tokens_out,
                cost_usd=cost_usd(route, route.model, reply.tokens_in, reply.tokens_out, self.prices),
                latency_ms=int((self._clock() - t0) * 1000), attempts=attempts, role=role, route_index=index,
                finish_reason=reply.finish_reason,
            )
            if schema is None:
                return result, None
            return result, call.parsed
        raise LLMUnavailable(role, failures)

    async def _call_with_retries(self, call: RouteCall) -> ProviderReply:
        s = self.settings
        backoff = wait_exponential_jitter(multiplier=s.llm_retry_initial_s, max=s.llm_retry_max_s,
                                          jitter=s.llm_retry_initial_s)

        def wait(retry_state) -> float:
            exc = retry_state.outcome.exception()
            ra = classify(exc).retry_after_s if exc else None
            delay = min(ra, s.llm_retry_after_max_s) if ra is not None else backoff(retry_state)
            if call.deadline is not None:
                delay = max(0.0, min(delay, call.deadline - self._clock()))
            return delay

        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(s.llm_max_attempts), wait=wait,
            retry=retry_if_exception(lambda e: classify(e).retryable), reraise=True,
        ):
            with attempt:
                return await self._attempt(call)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, call: RouteCall) -> ProviderReply:
        route = call.route
        timeout = self.settings.llm_timeout_s
        if call.deadline is not None:
            remaining = call.deadline - self._clock()
            if remaining <= 0:
                raise DeadlineExceeded("the call's deadline passed")
            timeout = min(timeout, remaining)
        breaker = self._breaker(self._endpoint_key(route))
        breaker.acquire()  # BreakerOpen: not retryable -> next route at once
        call.attempts += 1  # only requests that were sent count
        started_wall, started = datetime.now(UTC), self._clock()
        reply: ProviderReply | None = None
        try:
            try:
                async with asyncio.timeout(timeout):
                    reply = await self._clients.send(route, call.messages, call.schema, call.max_tokens,
                                                     call.temperature, timeout)
            except TimeoutError as exc:
                raise LLMTimeout(f"no reply from {route.endpoint(self.settings)} within {timeout:.1f} s") from exc
        except BaseException as exc:
            verdict = classify(exc) if isinstance(exc, Exception) else ErrorClass(False, False)
            if verdict.endpoint_failure:
                breaker.failure()
            else:
                breaker.release()
            if isinstance(exc, Exception):
                await self._emit(call, started_wall, started, None, "error", f"{type(exc).__name__}: {exc}")
            raise
        breaker.success()
        if call.schema is None:
            await self._emit(call, started_wall, started, reply, "ok", None)
            return reply
        try:
            call.parsed = _parse(call.schema, reply.text)
        except LLMOutputInvalid as bad:
            await self._emit(call, started_wall, started, reply, "invalid", short_text(bad.errors, 1000))
            bad.result = LLMResult(
                text=reply.text, model=reply.model or route.model, provider=route.provider,
                endpoint=route.endpoint(self.settings), tokens_in=reply.tokens_in, tokens_out=reply.tokens_out,
                cost_usd=cost_usd(route, route.model, reply.tokens_in, reply.tokens_out, self.prices),
                latency_ms=int((self._clock() - started) * 1000), attempts=call.attempts, role=call.role,
                route_index=call.index, finish_reason=reply.finish_reason,
            )
            raise bad from None
        await self._emit(call, started_wall, started, reply, "ok", None)
        return reply

    async def _emit(self, call: RouteCall, started_wall: datetime, started: float, reply: ProviderReply | None,
                    outcome: str, error: str | None) -> None:
        """Record one attempt (llm_calls, the post's totals) and hand it to the observers."""
        route = call.route
        latency_ms = int((self._clock() - started) * 1000)
        t_in, t_out = (reply.tokens_in, reply.tokens_out) if reply else (0, 0)
        cost = cost_usd(route, route.model, t_in, t_out, self.prices)
        endpoint = route.endpoint(self.settings)
        if self._recorder is not None:
            try:
                await self._recorder(thread_id=call.thread_id, role=call.role, provider=route.provider,
                                     endpoint=endpoint, model=route.model, tokens_in=t_in, tokens_out=t_out,
                                     cost_usd=cost, latency_ms=latency_ms, outcome=outcome, error=error)
            except Exception:  # noqa: BLE001 - bookkeeping must not lose a paid-for reply
                log.exception("could not record an LLM call of role %s", call.role)
        if self._observers:
            event = LLMCallEvent(
                role=call.role, thread_id=call.thread_id, provider=route.provider, endpoint=endpoint,
                model=route.model, messages=call.messages, output=reply.text if reply else None, tokens_in=t_in,
                tokens_out=t_out, cost_usd=cost, latency_ms=latency_ms, outcome=outcome, error=error,
                started_at=started_wall, ended_at=datetime.now(UTC), attempt=call.attempts,
                route_index=call.index, structured=call.schema.__name__ if call.schema else None,
            )
            for obs in self._observers:
                try:
                    out = obs(event)
                    if inspect.isawaitable(out):
                        await out
                except Exception:  # noqa: BLE001 - tracing never fails a call
                    log.exception("LLM observer %r failed", obs)


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
