"""A scripted LLM server over real HTTP: OpenAI-compatible (/v1/chat/completions, /v1/models)
and Anthropic-compatible (/v1/messages) at once, on 127.0.0.1 and a free port, in a background
thread. Replies are scripted per test; every request is recorded. It listens on a real port, so
a system under test in another process (langgraph dev, the CLI) can use it too.

    with ScriptedLLM(models=["newsroom-writer", "newsroom-judge"]) as llm:
        settings = load_settings(llm_base_url=llm.base_url, anthropic_base_url=llm.anthropic_base_url, ...)
        llm.on_chat(lambda req: VERDICT_JSON if req.wants_json else "A draft.", model="newsroom-judge")
        llm.script(Fault.server_error(), Fault.rate_limited(1.5), "then this text")   # queue, any model
        ...
        llm.requests        # [ChatRequest(api, path, model, messages, body, headers), ...]

A handler (or queued item) is one of:
    str               -> the reply text (Anthropic + tools: parsed as the tool input when it is JSON)
    dict / list       -> a JSON reply (OpenAI: the text is json.dumps(obj); Anthropic: the tool input)
    Reply(...)        -> full control: text, tool_input, tokens, delays, finish reason
    Fault(...)        -> an HTTP error, a Retry-After, a hang, a truncated body or stream
    a callable(ChatRequest) returning one of the above (sync or async)
Resolution order per request: the model's queue, the shared queue, the model's handler, the
default handler, else Reply("ok").
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    text: str = "ok"
    tool_input: dict | None = None  # Anthropic tool_use input; default: json.loads(text) when tools are offered
    tokens_in: int | None = None  # default: words in the prompt
    tokens_out: int | None = None  # default: words in the text
    delay_s: float = 0.0  # before the reply starts
    per_token_delay_s: float = 0.0  # simulated decode time, per output token
    finish_reason: str = "stop"
    model: str | None = None  # the model name reported back (default: the one requested)

    @classmethod
    def json(cls, obj: Any, **kw) -> Reply:
        return cls(text=json.dumps(obj), tool_input=obj if isinstance(obj, dict) else None, **kw)


@dataclass
class Fault:
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float | None = None  # wait this long (or until the server stops), then answer status
    truncate: bool = False  # announce a body (or stream) and cut the connection mid-way

    @classmethod
    def server_error(cls, status: int = 500, message: str = "scripted failure") -> Fault:
        return cls(status=status, body={"error": {"message": message, "type": "server_error"}})

    @classmethod
    def rate_limited(cls, retry_after_s: float = 1.0) -> Fault:
        return cls(status=429, headers={"retry-after": f"{retry_after_s:g}"},
                   body={"error": {"message": "slow down", "type": "rate_limit_error"}})

    @classmethod
    def hang(cls, seconds: float = 3600.0) -> Fault:
        return cls(status=504, hang_s=seconds, body={"error": {"message": "hung", "type": "timeout"}})

    @classmethod
    def truncated(cls) -> Fault:
        return cls(status=200, truncate=True)

    @classmethod
    def not_found(cls, message: str = "model does not exist") -> Fault:
        return cls(status=404, body={"error": {"message": message, "type": "not_found_error"}})


@dataclass
class ChatRequest:
    api: str  # "openai" | "anthropic"
    path: str
    model: str
    messages: list[dict]  # OpenAI style; an Anthropic `system` comes first as a system message
    body: dict
    headers: dict[str, str]
    at: float = field(default_factory=time.time)

    def __getitem__(self, key: str) -> Any:  # req["model"] works like the raw request JSON
        return self.body[key]

    @property
    def response_format(self) -> dict | None:
        return self.body.get("response_format")

    @property
    def tools(self) -> list[dict] | None:
        return self.body.get("tools")

    @property
    def wants_json(self) -> bool:
        return bool(self.response_format or self.tools)

    @property
    def schema(self) -> dict | None:
        """The JSON schema asked for, in whichever form the client used."""
        rf = self.response_format or {}
        if rf.get("type") == "json_schema":
            return (rf.get("json_schema") or {}).get("schema")
        if rf.get("type") == "json_object":
            return rf.get("schema")
        if self.tools:
            return self.tools[0].get("input_schema")
        return None

    @property
    def prompt(self) -> str:
        return "\n".join(str(m.get("content", "")) for m in self.messages)


Handler = Callable[[ChatRequest], Any] | str | dict | Reply | Fault


def _words(text: str) -> int:
    return max(1, len(text.split())) if text else 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Anthropic / OpenAI content blocks
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


class ScriptedLLM:
    def __init__(self, models: list[str] | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.models: list[str] = list(models or ["newsroom-writer", "newsroom-judge"])
        self.requests: list[ChatRequest] = []
        self.model_list_requests = 0
        self._handlers: dict[str | None, Handler] = {}
        self._queues: dict[str | None, deque] = {}
        self._lock = threading.Lock()
        self._host, self._port = host, port
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None

    # -- scripting API ----------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL (ends in /v1)."""
        return f"{self.root_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Anthropic SDK base URL (the SDK appends /v1/messages)."""
        return self.root_url

    def on_chat(self, handler: Handler, *, model: str | None = None) -> None:
        """Answer every request (for `model`, or any model when None) with `handler`."""
        with self._lock:
            self._handlers[model] = handler

    def script(self, *items: Handler, model: str | None = None) -> None:
        """Queue replies consumed one per request, before any handler."""
        with self._lock:
            self._queues.setdefault(model, deque()).extend(items)

    def reset(self) -> None:
        with self._lock:
            self._handlers.clear()
            self._queues.clear()
            self.requests.clear()
            self.model_list_requests = 0

    def requests_for(self, model: str) -> list[ChatRequest]:
        return [r for r in self.requests if r.model == model]

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> ScriptedLLM:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        started = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._closing = asyncio.Event()
            self._loop.call_soon(started.set)
            self._loop.run_until_complete(self._server.serve(sockets=[sock]))
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"scripted-llm:{self._port}", daemon=True)
        self._thread.start()
        started.wait(10)
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError("scripted LLM server did not start")
        return self

    def close(self) -> None:
        if self._server is None:
            return
        if self._loop is not None and self._closing is not None:
            self._loop.call_soon_threadsafe(self._closing.set)  # release hanging handlers
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = None

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the app --------------------------------------------------------------------------------

    def _next_item(self, req: ChatRequest) -> Handler:
        with self._lock:
            for key in (req.model, None):
                q = self._queues.get(key)
                if q:
                    return q.popleft()
            if req.model in self._handlers:
                return self._handlers[req.model]
            return self._handlers.get(None, Reply())

    async def _resolve(self, req: ChatRequest) -> Reply | Fault:
        item = self._next_item(req)
        if callable(item) and not isinstance(item, (Reply, Fault)):
            item = item(req)
            if inspect.isawaitable(item):
                item = await item
        if isinstance(item, (Reply, Fault)):
            return item
        if isinstance(item, str):
            return Reply(text=item)
        if isinstance(item, (dict, list)):
            return Reply.json(item)
        raise TypeError(f"scripted handler returned {type(item).__name__}")

    def _app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/models", self._models, methods=["GET"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/health", lambda r: JSONResponse({"ok": True}), methods=["GET"]),
        ])

    async def _models(self, request: Request) -> Response:
        self.model_list_requests += 1
        now = int(time.time())
        # One shape both SDKs accept: OpenAI's list + Anthropic's page fields.
        data = [{"id": m, "object": "model", "created": now, "owned_by": "scripted", "type": "model",
                 "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in self.models]
        return JSONResponse({"object": "list", "data": data, "has_more": False,
                             "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})

    async def _fault(self, fault: Fault) -> Response | None:
        if fault.hang_s is not None:
            try:
                await asyncio.wait_for(self._closing.wait(), fault.hang_s)
            except TimeoutError:
                pass
        if fault.truncate:
            return None
        body = fault.body if fault.body is not None else {"error": {"message": "scripted fault"}}
        return JSONResponse(body, status_code=fault.status, headers=fault.headers)

    async def _record(self, request: Request, api: str) -> ChatRequest:
        body = await request.json()
        messages = [{"role": m.get("role"), "content": _content_text(m.get("content"))} for m in body.get("messages", [])]
        if api == "anthropic" and body.get("system"):
            messages.insert(0, {"role": "system", "content": _content_text(body["system"])})
        req = ChatRequest(api=api, path=request.url.path, model=body.get("model", ""), messages=messages,
                          body=body, headers={k.lower(): v for k, v in request.headers.items()})
        with self._lock:
            self.requests.append(req)
        return req

    @staticmethod
    def _usage(req: ChatRequest, reply: Reply) -> tuple[int, int]:
        t_in = reply.tokens_in if reply.tokens_in is not None else _words(req.prompt)
        t_out = reply.tokens_out if reply.tokens_out is not None else _words(reply.text)
        return t_in, t_out

    async def _chat(self, request: Request) -> Response:
        req = await self._record(request, "openai")
        outcome = await self._resolve(req)
        if isinstance(outcome, Fault):
            resp = await self._fault(outcome)
            if resp is not None:
                return resp
            if req.body.get("stream"):
                return _TruncatedStream(req.model)
            return _TruncatedBody()
        reply = outcome
        t_in, t_out = self._usage(req, reply)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        model = reply.model or req.model
        if req.body.get("stream"):
            return StreamingResponse(self._stream(cid, model, reply, t_in, t_out, req),
                                     media_type="text/event-stream")
        if reply.per_token_delay_s:
            await asyncio.sleep(reply.per_token_delay_s * t_out)
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "finish_reason": reply.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": t_in, "completion_tokens": t_out, "total_tokens": t_in + t_out},
        })

    async def _stream(self, cid: str, model: str, reply: Reply, t_in: int, t_out: int, req: ChatRequest):
        pieces = reply.text.split(" ")
        created = int(time.time())
        per_piece = reply.per_token_delay_s * t_out / max(1, len(pieces))
        for i, piece in enumerate(pieces):
            if per_piece:
                await asyncio.sleep(per_piece)
            delta = {"content": piece if i == 0 else " " + piece}
            yield "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                         "model": model, "choices": [{"index": 0, "delta": delta,
                                                                      "finish_reason": None}]}) + "\n\n"
        final = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]}
        if (req.body.get("stream_options") or {}).get("include_usage"):
            final["usage"] = {"prompt_tokens": t_in, "completion_tokens": t_out, "total_tokens": t_in + t_out}
        yield "data: " + json.dumps(final) + "\n\n"
        yield "data: [DONE]\n\n"

    async def _messages(self, request: Request) -> Response:
        req = await self._record(request, "anthropic")
        outcome = await self._resolve(req)
        if isinstance(outcome, Fault):
            resp = await self._fault(outcome)
            return resp if resp is not None else _TruncatedBody()
        reply = outcome
        t_in, t_out = self._usage(req, reply)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.per_token_delay_s:
            await asyncio.sleep(reply.per_token_delay_s * t_out)
        content: list[dict] = []
        stop_reason = "end_turn" if reply.finish_reason == "stop" else reply.finish_reason
        tools = req.tools
        if tools:
            tool_input = reply.tool_input
            if tool_input is None:
                try:
                    parsed = json.loads(reply.text)
                    tool_input = parsed if isinstance(parsed, dict) else None
                except ValueError:
                    tool_input = None
            if tool_input is not None:
                content.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}",
                                "name": tools[0]["name"], "input": tool_input})
                stop_reason = "tool_use"
            else:  # a model that ignored the tool: plain text
                content.append({"type": "text", "text": reply.text})
        else:
            content.append({"type": "text", "text": reply.text})
        return JSONResponse({
            "id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant",
            "model": reply.model or req.model, "content": content, "stop_reason": stop_reason,
            "stop_sequence": None, "usage": {"input_tokens": t_in, "output_tokens": t_out},
        })


class _QuietTruncation(logging.Filter):
    """uvicorn logs the exception we raise on purpose to cut a connection: drop just those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, ConnectionAbortedError) and "scripted truncation" in str(exc))


logging.getLogger("uvicorn.error").addFilter(_QuietTruncation())


class _TruncatedBody(Response):
    """Announces a 4 KiB JSON body, sends 30 bytes of it and drops the connection."""

    def __init__(self):
        super().__init__(status_code=200)

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-cut", "choi', "more_body": True})
        raise ConnectionAbortedError("scripted truncation")  # uvicorn closes the transport


class _TruncatedStream(Response):
    """Starts an SSE stream, sends one chunk and drops the connection (no finish_reason, no [DONE])."""

    def __init__(self, model: str):
        super().__init__(status_code=200)
        self.model = model

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        chunk = {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": self.model, "choices": [{"index": 0, "delta": {"content": "Half"}, "finish_reason": None}]}
        await send({"type": "http.response.body", "body": ("data: " + json.dumps(chunk) + "\n\n").encode(),
                    "more_body": True})
        raise ConnectionAbortedError("scripted truncation")
