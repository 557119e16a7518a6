"""A Langfuse stand-in on loopback: the OTLP/HTTP trace endpoint and the scores endpoint, over real HTTP.

    with LangfuseReceiver() as lf:   # lf.base_url -> LANGFUSE_BASE_URL
        ...; lf.spans, lf.scores, lf.bodies

POST /api/public/otel/v1/traces decodes the protobuf ExportTraceServiceRequest (gzip or not);
POST /api/public/scores keeps the JSON batch. Every decoded request body is kept verbatim in
`bodies`, so a test can look for a string anywhere the SDK sent it.
"""
from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TRACES_PATH = "/api/public/otel/v1/traces"
SCORES_PATH = "/api/public/scores"


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_message: str
    scope_attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str | None:
        return self.attributes.get("langfuse.observation.type")

    def json_attr(self, key: str) -> Any:
        value = self.attributes.get(key)
        return json.loads(value) if isinstance(value, str) else value

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def _any_value(v) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


class LangfuseReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.scores: list[dict] = []
        self.bodies: list[bytes] = []
        self.auth_headers: list[str] = []
        self.encodings: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()
            self.scores.clear()
            self.bodies.clear()
            self.auth_headers.clear()
            self.encodings.clear()

    def spans_of(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, ready: Callable[[], bool], timeout_s: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return True
            time.sleep(0.05)
        return ready()

    def _handle(self, path: str, body: bytes, headers) -> tuple[int, str, bytes]:
        if headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.bodies.append(body)
            self.auth_headers.append(headers.get("Authorization", ""))
            self.encodings.append(headers.get("Content-Encoding", "identity"))
        if path == TRACES_PATH:
            request = ExportTraceServiceRequest.FromString(body)
            received = []
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    scope_attrs = {kv.key: _any_value(kv.value) for kv in ss.scope.attributes}
                    for sp in ss.spans:
                        received.append(ReceivedSpan(
                            trace_id=sp.trace_id.hex(), span_id=sp.span_id.hex(), parent_span_id=sp.parent_span_id.hex(),
                            name=sp.name, start_ns=sp.start_time_unix_nano, end_ns=sp.end_time_unix_nano,
                            attributes={kv.key: _any_value(kv.value) for kv in sp.attributes},
                            status_message=sp.status.message, scope_attributes=scope_attrs,
                        ))
            with self._lock:
                self.spans.extend(received)
            return 200, "application/x-protobuf", ExportTraceServiceResponse().SerializeToString()
        if path == SCORES_PATH:
            batch = json.loads(body)
            with self._lock:
                self.scores.extend(batch if isinstance(batch, list) else batch.get("scores", [batch]))
            return 202, "application/json", b'{"message": "Accepted"}'
        return 404, "application/json", b'{"message": "not here"}'

    def start(self) -> LangfuseReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, ctype, out = receiver._handle(self.path.split("?")[0], body, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="langfuse-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LangfuseReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
