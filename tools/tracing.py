"""Langfuse tracing (SDK 5, OpenTelemetry): one trace per post thread.

    @traced_desk("writer")                      # a span per desk run (graphs/desks.py)
    async def write(state, config): ...
    record_scores(tid, {"technical_accuracy": 4}, key="review-1")   # Langfuse scores on the trace
    await flush_traces()                        # bounded, off the event loop (service/runner.py)

The trace id is derived from the thread id (sha256, as Langfuse.create_trace_id(seed=...)), so a
run that stops at the approval interrupt and its resume, in another process or in the Agent
Server, land in the same trace. Trace attributes: session id = thread id, user id = requester,
name "newsroom post", tags newsroom + source:<source>. Each desk span is a root observation of that
trace (no common parent span exists across processes); a generation per LLM call (the gateway's
observer seam: model, usage, cost, real start/end) nests under the desk span that made it.

Off unless both Langfuse keys are set (and NEWSROOM_TRACING_ENABLED is not false): then the SDK is
never imported, no thread starts, no observer is registered, and each traced node costs one
function call. A down or slow Langfuse host never fails or blocks a run: span export and score
upload run in the SDK's background threads, the request timeout is LANGFUSE_TIMEOUT (2 s here),
and flushes run in one daemon thread that callers wait for at most tracing_flush_timeout_s.

Secrets never leave in a span: every value passes the Scrubber (configured secrets by value, also
URL-quoted or unquoted, and their heads and tails when a repr cut them short;
credential-shaped strings by pattern) at creation (the SDK's `mask`) and again over every string
attribute at export (`mask_otel_spans`); status messages are scrubbed before they are set, and
exceptions are never recorded as OpenTelemetry events (their text could hold a DSN).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from config import Settings, get_settings
from tools.redaction import (  # noqa: F401 - the scrubber moved to tools/redaction.py; these names stay importable here
    REDACTED,
    Scrubber,
    configured_secrets,
    install_log_redaction,
    public_reason,
)

if TYPE_CHECKING:
    from langfuse import Langfuse

    from tools.llm.gateway import LLMCallEvent

log = logging.getLogger("newsroom.tracing")

TRACE_NAME = "newsroom post"
GENERATION_PREFIX = "llm."
MAX_TEXT = 4000  # characters per string in a span's input/output: spans describe work, they are not an archive


def trace_id_for(thread_id: str) -> str:
    """The Langfuse trace id of a thread: 32 hex chars, the same in every process."""
    return hashlib.sha256(thread_id.encode("utf-8")).digest()[:16].hex()


# --- the process-wide tracer ----------------------------------------------------------------------

class Tracing:
    """The Langfuse client of this process and what we build on it."""

    def __init__(self, settings: Settings):
        from langfuse import Langfuse

        self.settings = settings
        self.capture_content = settings.tracing_capture_content
        self.scrubber = Scrubber(configured_secrets(settings))
        self.client: Langfuse = Langfuse(
            public_key=settings.langfuse_public_key,
            secret_key=settings.langfuse_secret_key.get_secret_value(),
            base_url=settings.langfuse_base_url,
            timeout=settings.langfuse_timeout_s,
            mask=_mask_values,
            mask_otel_spans=_mask_exported,
        )
        global _active_scrubber
        _active_scrubber = self.scrubber
        self._flusher = _Flusher(self.client)

    def _content(self, value: Any) -> Any:
        return _clip(value) if self.capture_content else None

    def _status(self, text: str | None) -> str | None:
        return self.scrubber.text(text)[:1000] if text else None

    # -- desk spans -------------------------------------------------------------------------------

    async def run_desk(self, name: str, fn: Callable[[Any, Any], Awaitable[Any]], state: Any, config: Any,
                       flush_after: bool) -> Any:
        from langfuse import propagate_attributes
        from opentelemetry import trace as otel_trace

        tid = str(((config or {}).get("configurable") or {}).get("thread_id") or "")
        if not tid:
            return await fn(state, config)
        stack = contextlib.ExitStack()
        try:
            source = str(getattr(state, "source", "") or "")
            stack.enter_context(propagate_attributes(
                session_id=tid, user_id=_ascii(getattr(state, "requester", None)), trace_name=TRACE_NAME,
                tags=["newsroom"] + ([f"source:{_ascii(source)}"] if source else []),
                metadata={"thread_id": tid},
            ))
            span = self.client.start_observation(
                trace_context={"trace_id": trace_id_for(tid)}, name=name, as_type="span",
                input=self._content(_desk_input(state)),
                metadata={"thread_id": tid, "desk": name, "node": getattr(fn, "__name__", name),
                          "revision": getattr(state, "revision", None)},
            )
            # Current span for the node's body (generations nest under it); exceptions are not
            # recorded as span events: their text is not scrubbed by the export hook.
            stack.enter_context(otel_trace.use_span(span._otel_span, end_on_exit=False, record_exception=False,
                                                    set_status_on_exception=False))
        except Exception:  # noqa: BLE001 - tracing never fails a desk
            stack.close()
            log.debug("could not open the %s span", name, exc_info=True)
            return await fn(state, config)
        with stack:
            try:
                update = await fn(state, config)
            except BaseException as exc:
                self._end_desk_raised(span, exc)
                raise
            self._end_desk(span, update, flush_after)
            return update

    def _end_desk(self, span: Any, update: Any, flush_after: bool) -> None:
        try:
            outcome = update.get("outcome") if isinstance(update, dict) else None
            failed = outcome == "failed"
            span.update(output=self._content(update), level="ERROR" if failed else None,
                        status_message=self._status(update.get("error")) if failed else None)
            span.end()
            if flush_after or outcome is not None:
                self.flush_soon()  # the run ends here: send now rather than at the next batch tick
        except Exception:  # noqa: BLE001
            log.debug("could not end a desk span", exc_info=True)

    def _end_desk_raised(self, span: Any, exc: BaseException) -> None:
        try:
            from langgraph.errors import GraphBubbleUp, GraphInterrupt

            if isinstance(exc, GraphInterrupt):
                # The approval gate: the run pauses here; its resume opens a new span in this trace.
                values = [getattr(i, "value", i) for i in (exc.args[0] if exc.args else ())]
                span.update(output=self._content({"status": "waiting for a human", "interrupt": values}),
                            status_message="interrupted: waiting for a human")
                span.end()
                self.flush_soon()
                return
            if isinstance(exc, GraphBubbleUp):
                span.end()  # graph control flow, not a failure
                return
            if isinstance(exc, asyncio.CancelledError):
                span.update(level="WARNING", status_message="cancelled")
            else:
                span.update(level="ERROR", status_message=self._status(f"{type(exc).__name__}: {exc}"))
            span.end()
            self.flush_soon()
        except Exception:  # noqa: BLE001
            log.debug("could not end a desk span", exc_info=True)

    # -- generations (the gateway's observer seam) ----------------------------------------------

    def on_llm_call(self, event: LLMCallEvent) -> None:
        """One generation per HTTP attempt, with its real start and end, under the current desk span."""
        from langfuse import LangfuseGeneration, propagate_attributes
        from langfuse._client.attributes import LangfuseOtelSpanAttributes
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        current = otel_trace.get_current_span().get_span_context()
        wanted = int(trace_id_for(event.thread_id), 16) if event.thread_id else None
        under_desk = current.is_valid and (wanted is None or current.trace_id == wanted)
        if not under_desk and wanted is None:
            return  # neither in a desk nor for a thread (an eval script): no trace to join
        start_ns = int(event.started_at.timestamp() * 1_000_000_000)
        end_ns = start_ns + max(0, event.latency_ms) * 1_000_000
        with contextlib.ExitStack() as stack:
            parent_context = None
            if not under_desk:
                # A call made outside a desk span (or under someone else's span): the thread's trace.
                stack.enter_context(propagate_attributes(session_id=event.thread_id, trace_name=TRACE_NAME))
                root = otel_trace.NonRecordingSpan(otel_trace.SpanContext(
                    trace_id=wanted, span_id=RandomIdGenerator().generate_span_id(), is_remote=False,
                    trace_flags=otel_trace.TraceFlags(0x01)))
                parent_context = otel_trace.set_span_in_context(root, otel_context.get_current())
            # The SDK's start_observation has no start time; the Langfuse tracer takes one.
            otel_span = self.client._otel_tracer.start_span(
                name=f"{GENERATION_PREFIX}{event.role}", start_time=start_ns, context=parent_context)
            if not under_desk:
                otel_span.set_attribute(LangfuseOtelSpanAttributes.AS_ROOT, True)
        level = {"error": "ERROR", "invalid": "WARNING"}.get(event.outcome)
        generation = LangfuseGeneration(
            otel_span=otel_span, langfuse_client=self.client, model=event.model,
            input=self._content(event.messages), output=self._content(event.output),
            usage_details={"input": event.tokens_in, "output": event.tokens_out,
                           "total": event.tokens_in + event.tokens_out},
            cost_details={"total": float(event.cost_usd)},
            level=level, status_message=self._status(event.error),
            metadata={"role": event.role, "provider": event.provider, "endpoint": event.endpoint,
                      "outcome": event.outcome, "attempt": event.attempt, "route_index": event.route_index,
                      "latency_ms": event.latency_ms, "structured": event.structured, "thread_id": event.thread_id},
        )
        generation.end(end_time=end_ns)

    # -- scores ---------------------------------------------------------------------------------

    def record_scores(self, thread_id: str, scores: Mapping[str, float | int | bool | str], *, key: str,
                      comments: Mapping[str, str] | None = None, metadata: Mapping[str, Any] | None = None) -> None:
        from opentelemetry import trace as otel_trace

        trace_id = trace_id_for(thread_id)
        current = otel_trace.get_current_span().get_span_context()
        observation_id = (format(current.span_id, "016x")
                          if current.is_valid and current.trace_id == int(trace_id, 16) else None)
        for name, value in scores.items():
            if isinstance(value, bool):
                data_type, value = "BOOLEAN", float(value)
            elif isinstance(value, (int, float)):
                data_type, value = "NUMERIC", float(value)
            else:
                data_type, value = "CATEGORICAL", self.scrubber.text(str(value))
            comment = (comments or {}).get(name) if self.capture_content else None
            self.client.create_score(
                name=name, value=value, data_type=data_type, trace_id=trace_id, observation_id=observation_id,
                # Deterministic: a replayed node upserts the same score instead of adding one.
                score_id=hashlib.sha256(f"{trace_id}:{key}:{name}".encode()).hexdigest()[:32],
                comment=self.scrubber.text(comment)[:1000] if comment else None,
                metadata=self.scrubber.value(dict(metadata or {})) or None,
            )

    # -- flushing -------------------------------------------------------------------------------

    def flush_soon(self) -> int:
        return self._flusher.request()

    async def flush(self, timeout_s: float) -> bool:
        ticket = self._flusher.request()
        return await asyncio.to_thread(self._flusher.wait, ticket, timeout_s)


class _Flusher:
    """One daemon thread runs client.flush() (synchronous, up to the SDK timeout per request).
    Requests made while a flush runs are served by the next one (it sees their spans); a down host
    never piles up threads, and nobody waits longer than they ask to."""

    def __init__(self, client: Langfuse):
        self._client = client
        self._cond = threading.Condition()
        self._requested = 0
        self._completed = 0
        self._running = False

    def request(self) -> int:
        with self._cond:
            self._requested += 1
            ticket = self._requested
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="newsroom-trace-flush", daemon=True).start()
            return ticket

    def wait(self, ticket: int, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._completed >= ticket, timeout=timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._completed >= self._requested:
                    self._running = False
                    return
                target = self._requested
            try:
                self._client.flush()
            except Exception:  # noqa: BLE001 - a failed export is the SDK's to log
                log.debug("Langfuse flush failed", exc_info=True)
            with self._cond:
                self._completed = target
                self._cond.notify_all()


# The SDK keeps the first client's hooks for a public key for the life of the process: the hooks
# read the current scrubber, so a rebuilt Tracing (new settings, new secrets) is honoured.
_active_scrubber = Scrubber(())


def _mask_values(*, data: Any, **_: Any) -> Any:
    """The SDK's `mask` hook: input, output and metadata of every observation, at creation."""
    return _active_scrubber.value(data)


def _mask_exported(*, params: Any) -> Any:
    """The SDK's `mask_otel_spans` hook: every string attribute of every span, at export."""
    from langfuse.types import MaskOtelSpansResult, OtelSpanPatch

    scrubber = _active_scrubber
    patches = {}
    for ident, span in params.spans.items():
        changed: dict[str, Any] = {}
        for key, value in span.attributes.items():
            if isinstance(value, str):
                clean = scrubber.text(value)
                if clean != value:
                    changed[key] = clean
            elif isinstance(value, (tuple, list)) and value and all(isinstance(x, str) for x in value):
                clean_seq = [scrubber.text(x) for x in value]
                if clean_seq != list(value):
                    changed[key] = clean_seq
        if changed:
            patches[ident] = OtelSpanPatch(set_attributes=changed)
    return MaskOtelSpansResult(span_patches=patches)


_UNSET: Any = object()
_tracing: Tracing | None = _UNSET
_lock = threading.Lock()


def tracing_configured(settings: Settings) -> bool:
    return bool(settings.tracing_enabled and settings.langfuse_public_key and settings.langfuse_secret_key
                and os.environ.get("LANGFUSE_TRACING_ENABLED", "true").lower() != "false")


def get_tracing() -> Tracing | None:
    """The process's Tracing, or None when Langfuse is not configured (decided once; reset_tracing())."""
    global _tracing
    current = _tracing
    if current is not _UNSET:
        return current
    with _lock:
        if _tracing is _UNSET:
            settings = get_settings()
            try:
                _tracing = Tracing(settings) if tracing_configured(settings) else None
            except Exception:  # noqa: BLE001 - a broken tracing setup must not stop the engine
                log.warning("Langfuse tracing disabled: could not start the client", exc_info=True)
                _tracing = None
        return _tracing


def tracing_on() -> bool:
    """Whether Langfuse tracing is configured in this process (a score's inputs need reading at all)."""
    return get_tracing() is not None


def reset_tracing() -> None:
    """Decide again from the current settings (tests). Langfuse keeps one client per public key
    per process: a new key gets a new client, the same key the first one's exporter."""
    global _tracing
    with _lock:
        _tracing = _UNSET


# --- the seams the engine uses ---------------------------------------------------------------------

def traced_desk(name: str, *, flush_after: bool = False):
    """Decorate an async LangGraph node (state, config): a span `name` in the thread's trace."""
    def decorate(fn):
        @functools.wraps(fn)
        async def node(state, config):
            tracing = get_tracing()
            if tracing is None:
                return await fn(state, config)
            return await tracing.run_desk(name, fn, state, config, flush_after)
        return node
    return decorate


def llm_call_observer() -> Callable[[LLMCallEvent], None] | None:
    """The gateway observer that writes generations, or None when tracing is off."""
    tracing = get_tracing()
    if tracing is None:
        return None

    def observe(event: LLMCallEvent) -> None:
        tracing.on_llm_call(event)

    return observe


def record_scores(thread_id: str, scores: Mapping[str, float | int | bool | str], *, key: str,
                  comments: Mapping[str, str] | None = None, metadata: Mapping[str, Any] | None = None) -> None:
    """Langfuse scores on the thread's trace (and on the current desk span); never raises."""
    tracing = get_tracing()
    if tracing is None:
        return
    try:
        tracing.record_scores(thread_id, scores, key=key, comments=comments, metadata=metadata)
    except Exception:  # noqa: BLE001
        log.debug("could not record scores", exc_info=True)


async def flush_traces(timeout_s: float | None = None) -> bool:
    """Send what is buffered; wait at most timeout_s (default tracing_flush_timeout_s), never on the
    event loop. True = delivered (or nothing to do), False = still going in the background."""
    tracing = get_tracing()
    if tracing is None:
        return True
    wait = tracing.settings.tracing_flush_timeout_s if timeout_s is None else timeout_s
    try:
        return await tracing.flush(wait)
    except Exception:  # noqa: BLE001
        log.debug("flush failed", exc_info=True)
        return False


@contextlib.asynccontextmanager
async def traces_flushed(timeout_s: float | None = None):
    """flush_traces() when the block ends, however it ends (a run's spans go out with it)."""
    try:
        yield
    finally:
        await flush_traces(timeout_s)


# --- helpers ----------------------------------------------------------------------------------------

def _ascii(value: Any) -> str | None:
    # Langfuse drops non-ASCII or > 200 char user ids; keep a readable, valid form instead.
    if value is None or value == "":
        return None
    return str(value).encode("ascii", "backslashreplace").decode("ascii")[:200]


def _clip(value: Any, limit: int = MAX_TEXT) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"... [{len(value) - limit} more chars]"
    if isinstance(value, Mapping):
        return {k: _clip(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clip(v, limit) for v in value]
    if hasattr(value, "model_dump"):
        return _clip(value.model_dump(mode="json"), limit)
    return value


def _desk_input(state: Any) -> dict:
    """What a desk starts from, in brief: the request and where the post stands."""
    draft = getattr(state, "latest_draft", None)
    out = {"topic": getattr(state, "topic", None), "revision": getattr(state, "revision", None)}
    if draft is not None:
        out["draft"] = {"version": draft.version, "title": getattr(draft, "title", None)}
    return out


__all__ = [
    "GENERATION_PREFIX",
    "REDACTED",
    "TRACE_NAME",
    "Scrubber",
    "Tracing",
    "configured_secrets",
    "flush_traces",
    "get_tracing",
    "llm_call_observer",
    "record_scores",
    "reset_tracing",
    "trace_id_for",
    "traced_desk",
    "traces_flushed",
    "tracing_configured",
]
