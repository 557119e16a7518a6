"""A real local HTTP receiver for the webhook destination (uvicorn in its own thread): checks the
HMAC-SHA256 signature, remembers every delivery with its Idempotency-Key, drops duplicates as a
well-behaved receiver would, and can be told to fail the next N attempts."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.server_fixtures import free_port


@dataclass
class Delivery:
    idempotency_key: str
    signature_ok: bool
    body: dict
    status: int
    at: float = field(default_factory=time.monotonic)


class WebhookReceiver:
    def __init__(self, secret: str):
        self.secret = secret
        self.port = free_port()
        self.deliveries: list[Delivery] = []
        self.accepted: dict[str, dict] = {}  # Idempotency-Key -> body, each kept once
        self.fail_next = 0
        self.fail_status = 503
        # Crash drills: hold a request for this long, before ("before") or after ("after") keeping it.
        self.hang_s, self.hang_when = 0.0, "before"
        self.in_flight = 0
        self._server: uvicorn.Server | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/posts"

    def _signed(self, request_ts: str, body: bytes, signature: str) -> bool:
        expected = "sha256=" + hmac.new(self.secret.encode(), request_ts.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        fresh = request_ts.isdigit() and abs(time.time() - int(request_ts)) < 300
        return fresh and hmac.compare_digest(expected, signature)

    async def _hook(self, request: Request) -> JSONResponse:
        import asyncio

        body = await request.body()
        if self.hang_s and self.hang_when == "before":
            self.in_flight += 1
            await asyncio.sleep(self.hang_s)
        key = request.headers.get("idempotency-key", "")
        ok = self._signed(request.headers.get("x-newsroom-timestamp", ""), body,
                          request.headers.get("x-newsroom-signature", ""))
        with self._lock:
            if not ok:
                status = 401
            elif self.fail_next > 0:
                self.fail_next -= 1
                status = self.fail_status
            else:
                status = 200 if key in self.accepted else 201
                self.accepted.setdefault(key, json.loads(body))
            self.deliveries.append(Delivery(key, ok, json.loads(body) if body else {}, status))
        if self.hang_s and self.hang_when == "after":
            self.in_flight += 1
            await asyncio.sleep(self.hang_s)
        headers = {"location": f"http://127.0.0.1:{self.port}/posts/{key}"} if status in (200, 201) else {}
        return JSONResponse({"ok": status < 300}, status_code=status, headers=headers)

    def start(self) -> WebhookReceiver:
        app = Starlette(routes=[Route("/hooks/posts", self._hook, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     lifespan="off", timeout_graceful_shutdown=1))
        self._thread = threading.Thread(target=self._server.run, name="webhook-receiver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("webhook receiver did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
            self._thread.join(10)
