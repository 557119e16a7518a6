"""The Agent Server's outer guard: one pure-ASGI middleware of the custom HTTP app.

langgraph-api puts the custom app's middleware outside its own (CORS, private-network, auth), so
every request from the network passes here first. Requests of the in-process client (the loopback
transport, root_path "/noauth", which no network request can set) are the server talking to
itself and pass untouched.

In order:
1. Host must be one of NEWSROOM_ALLOWED_HOSTS (DNS rebinding: a page on evil.example resolving to
   127.0.0.1 sends Host: evil.example).
2. A `/k/TOKEN/...` path prefix becomes `Authorization: Bearer TOKEN` (for clients that can only
   be given a base URL: Studio's `?baseUrl=`).
3. An Origin header must be this server's own or one of NEWSROOM_CORS_ORIGINS: other pages get
   403 even for "simple" requests the browser sends without a preflight. Private Network Access
   is granted only to the configured origins (`langgraph dev` grants it to every preflight).
4. Every route but the liveness probes needs a credential (the Agent Server's own routes are also
   checked by service/auth.py; /docs, /openapi.json, /info, /metrics and / are not, by langgraph),
   except the routes that check their own: the web pages (session cookie) and the Telegram webhook
   (its secret header).
5. Bodies are bounded: Content-Length over the route's limit is refused before a byte is read,
   and a body without one is cut off (413) at the limit.
"""
from __future__ import annotations

import json
from urllib.parse import unquote

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import get_settings

LIVENESS = ("/ok", "/newsroom/health")
OWN_AUTH_PREFIXES = ("/newsroom/ui", "/newsroom/telegram/webhook")
WEBHOOK_MAX_BYTES = 1024 * 1024
LOGIN_MAX_BYTES = 4 * 1024
WEB_FORM_MAX_BYTES = 64 * 1024
PATH_CREDENTIAL = "/k/"


def body_limit(path: str, default: int) -> int:
    if path == "/newsroom/telegram/webhook":
        return min(WEBHOOK_MAX_BYTES, default)
    if path == "/newsroom/ui/login":
        return LOGIN_MAX_BYTES
    if path.startswith("/newsroom/ui/runs/") and path.endswith("/decide"):
        # A decision may carry an edited draft: its character limit, URL-encoded (9 bytes a character at worst).
        return min(max(WEB_FORM_MAX_BYTES, 9 * get_settings().edit_max_chars + 16 * 1024), default)
    if path.startswith("/newsroom/ui"):
        return min(WEB_FORM_MAX_BYTES, default)
    return default


def host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def request_scheme(scope: Scope, headers: Headers, trust_forwarded: bool) -> str:
    """http or https, as the client connected. uvicorn (under `langgraph dev`) already rewrites
    scope["scheme"] from X-Forwarded-Proto for connections from 127.0.0.1, so any local process
    could flip it: untrusted, a request that carries the header is taken as plain http (`newsroom
    serve` itself never terminates TLS)."""
    forwarded = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if trust_forwarded:
        return forwarded if forwarded in ("http", "https") else scope.get("scheme", "http")
    return "http" if forwarded else scope.get("scheme", "http")


def is_loopback(scope: Scope) -> bool:
    root = scope.get("root_path") or ""
    return root == "/noauth" or root.startswith("/noauth/")


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class ServerGuard:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_loopback(scope):
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        headers = Headers(scope=scope)
        send_error = None if scope["type"] == "websocket" else send
        allowed_hosts = {h.strip("[]").lower() for h in settings.allowed_hosts}
        if host_name(headers.get("host", "")) not in allowed_hosts:
            if send_error is None:
                await send({"type": "websocket.close", "code": 1008})
                return
            await _answer(send, 400, "invalid Host header (NEWSROOM_ALLOWED_HOSTS)")
            return

        path = scope.get("path", "")
        if path.startswith(PATH_CREDENTIAL):
            token, _, rest = path[len(PATH_CREDENTIAL):].partition("/")
            raw = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
            raw.append((b"authorization", b"Bearer " + unquote(token).encode("latin-1", "replace")))
            path = "/" + rest
            scope = dict(scope, path=path, raw_path=path.encode(), headers=raw)
            headers = Headers(scope=scope)

        origin = headers.get("origin")
        scheme = request_scheme(scope, headers, settings.trust_forwarded_proto)
        own_origin = f"{scheme}://{headers.get('host', '')}".lower()  # a browser's Origin for ws:// too
        listed = origin is not None and origin in settings.cors_origins
        if origin is not None and not listed and origin.lower() != own_origin:
            if send_error is None:
                await send({"type": "websocket.close", "code": 1008})
                return
            await _answer(send, 403, "cross-origin request from an origin not in NEWSROOM_CORS_ORIGINS: refused")
            return

        method = scope.get("method", "GET")
        if method != "OPTIONS" and not self._exempt(path) and settings.identify(self._credential(headers)) is None:
            if send_error is None:
                await send({"type": "websocket.close", "code": 1008})
                return
            await _answer(send, 401, "missing or unknown credential: send Authorization: Bearer TOKEN",
                          [(b"www-authenticate", b"Bearer")])
            return

        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        limit = body_limit(path, settings.max_body_bytes)
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                await _answer(send, 400, "bad Content-Length")
                return
            if too_big:
                await _answer(send, 413, f"request body over {limit} bytes: refused before reading it")
                return

        if length is None and method not in ("GET", "HEAD", "OPTIONS"):
            # No Content-Length (chunked): read it here, up to the limit, before the app sees any of it.
            body, more = [], True
            total = 0
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                total += len(message.get("body", b""))
                if total > limit:
                    await _answer(send, 413, f"request body over {limit} bytes: refused")
                    return
                body.append(message.get("body", b""))
                more = message.get("more_body", False)
            replay = [{"type": "http.request", "body": b"".join(body), "more_body": False}]

            async def buffered_receive() -> Message:
                return replay.pop() if replay else await receive()

            receive = buffered_receive

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not listed:
                # Private Network Access only for the configured origins
                message = dict(message, headers=[(k, v) for k, v in message.get("headers", [])
                                                  if k.lower() != b"access-control-allow-private-network"])
            await send(message)

        await self.app(scope, receive, guarded_send)

    @staticmethod
    def _credential(headers: Headers) -> str | None:
        bearer = headers.get("authorization", "").strip()
        if bearer.lower().startswith("bearer "):
            return bearer[7:].strip() or None
        return headers.get("x-api-key", "").strip() or None

    @staticmethod
    def _exempt(path: str) -> bool:
        if path in LIVENESS:
            # /newsroom/health is liveness only without ?deep (the route asks for a credential then)
            return True
        return any(path == p or path.startswith(p + "/") for p in OWN_AUTH_PREFIXES)
