"""A Langfuse stand-in that also answers the public REST API the SDK's datasets, experiments and
annotation-queue reads use, over real HTTP on loopback (a real Langfuse is not reachable here).

    with LangfuseAPIReceiver(public_key, secret_key) as lf:   # lf.base_url -> LANGFUSE_BASE_URL
        ...; lf.requests, lf.datasets, lf.dataset_items, lf.spans, lf.scores

Endpoints (the paths and shapes langfuse 5.0.4's generated client sends and parses):
  GET  /api/public/projects                          the project (run_experiment resolves its id)
  GET  /api/public/v2/datasets/{name}, POST /api/public/v2/datasets
  GET  /api/public/dataset-items?datasetName=...,    POST /api/public/dataset-items (upsert by id)
  GET  /api/public/annotation-queues/{id}/items?status=...
  GET  /api/public/v3/scores?queueId=...&source=...  annotation scores a test adds with annotate()
  GET  /api/public/v2/observations?traceId=...       the spans this receiver got over OTLP, as observations
  POST /api/public/otel/v1/traces, POST /api/public/scores   (tests/otlp_receiver.py)
Every request is recorded (method, path, query, JSON body); a wrong Basic credential gets 401.
"""
from __future__ import annotations

import base64
import gzip
import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from tests.otlp_receiver import LangfuseReceiver

PROJECT_ID = "proj-newsroom-tests"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def _maybe_json(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class LangfuseAPIReceiver(LangfuseReceiver):
    def __init__(self, public_key: str, secret_key: str) -> None:
        super().__init__()
        self.expected_auth = "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
        self.requests: list[dict] = []
        self.datasets: dict[str, dict] = {}
        self.dataset_items: dict[str, dict] = {}
        self.queue_items: dict[str, list[dict]] = {}
        self.annotation_scores: list[dict] = []

    # -- what a test sets up: people labelling in an annotation queue ------------------------------

    def enqueue(self, queue_id: str, object_id: str, object_type: str = "TRACE", status: str = "COMPLETED") -> None:
        self.queue_items.setdefault(queue_id, []).append({
            "id": uuid.uuid4().hex, "queueId": queue_id, "objectId": object_id, "objectType": object_type,
            "status": status, "completedAt": _now() if status == "COMPLETED" else None,
            "createdAt": _now(), "updatedAt": _now()})

    def annotate(self, queue_id: str, subject: dict, name: str, value, comment: str | None = None) -> None:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        self.annotation_scores.append({
            "id": uuid.uuid4().hex, "projectId": PROJECT_ID, "name": name, "value": value,
            "dataType": "NUMERIC" if numeric else "CATEGORICAL", "source": "ANNOTATION", "timestamp": _now(),
            "environment": "default", "createdAt": _now(), "updatedAt": _now(), "comment": comment,
            "queueId": queue_id, "authorUserId": "annotator-1", "subject": subject})

    def requests_to(self, method: str, path_prefix: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["method"] == method and r["path"].startswith(path_prefix)]

    # -- the REST API -----------------------------------------------------------------------------

    def _observations(self, trace_id: str) -> list[dict]:
        with self._lock:
            spans = [s for s in self.spans if s.trace_id == trace_id]
        out = []
        for s in spans:
            a = s.attributes
            out.append({
                "id": s.span_id, "traceId": s.trace_id, "startTime": _iso(s.start_ns), "endTime": _iso(s.end_ns),
                "projectId": PROJECT_ID, "parentObservationId": s.parent_span_id or None,
                "type": str(a.get("langfuse.observation.type") or "span").upper(), "name": s.name,
                "input": _maybe_json(a.get("langfuse.observation.input")),
                "output": _maybe_json(a.get("langfuse.observation.output")),
                "sessionId": a.get("session.id"),
            })
        return sorted(out, key=lambda o: o["startTime"])

    def _get(self, path: str, query: dict) -> tuple[int, object]:
        q = {k: v[0] for k, v in query.items()}
        if path == "/api/public/projects":
            return 200, {"data": [{"id": PROJECT_ID, "name": "newsroom tests", "metadata": {},
                                   "organization": {"id": "org-1", "name": "tests"}}]}
        if path.startswith("/api/public/v2/datasets/"):
            name = unquote(path.rsplit("/", 1)[1])
            ds = self.datasets.get(name)
            return (200, ds) if ds else (404, {"message": f"dataset {name} not found"})
        if path == "/api/public/dataset-items":
            name = q.get("datasetName")
            items = [i for i in self.dataset_items.values() if name is None or i["datasetName"] == name]
            page, limit = int(q.get("page", 1)), int(q.get("limit", 50))
            chunk = items[(page - 1) * limit: page * limit]
            pages = max(1, -(-len(items) // limit))
            return 200, {"data": chunk, "meta": {"page": page, "limit": limit, "totalItems": len(items),
                                                 "totalPages": pages}}
        if path.startswith("/api/public/annotation-queues/") and path.endswith("/items"):
            queue_id = unquote(path.split("/")[4])
            items = [i for i in self.queue_items.get(queue_id, []) if q.get("status") in (None, i["status"])]
            return 200, {"data": items, "meta": {"page": 1, "limit": 100, "totalItems": len(items), "totalPages": 1}}
        if path == "/api/public/v3/scores":
            scores = [s for s in self.annotation_scores
                      if q.get("queueId") in (None, s["queueId"])
                      and (q.get("source") is None or q["source"].upper() == s["source"])]
            return 200, {"data": scores, "meta": {"limit": int(q.get("limit", 50))}}
        if path == "/api/public/v2/observations":
            return 200, {"data": self._observations(q.get("traceId", "")), "meta": {}}
        return 404, {"message": "not here"}

    def _post_json(self, path: str, body: dict) -> tuple[int, object] | None:
        if path == "/api/public/v2/datasets":
            ds = {"id": "ds-" + uuid.uuid4().hex[:12], "name": body["name"], "description": body.get("description"),
                  "metadata": body.get("metadata"), "inputSchema": body.get("inputSchema"),
                  "expectedOutputSchema": body.get("expectedOutputSchema"), "projectId": PROJECT_ID,
                  "createdAt": _now(), "updatedAt": _now()}
            with self._lock:
                self.datasets.setdefault(body["name"], ds)
                return 200, self.datasets[body["name"]]
        if path == "/api/public/dataset-items":
            ds = self.datasets.get(body["datasetName"])
            if ds is None:
                return 404, {"message": "dataset not found"}
            item_id = body.get("id") or uuid.uuid4().hex
            item = {"id": item_id, "status": body.get("status") or "ACTIVE", "input": body.get("input"),
                    "expectedOutput": body.get("expectedOutput"), "metadata": body.get("metadata"),
                    "sourceTraceId": body.get("sourceTraceId"), "sourceObservationId": body.get("sourceObservationId"),
                    "datasetId": ds["id"], "datasetName": ds["name"], "createdAt": _now(), "updatedAt": _now(),
                    "mediaReferences": []}
            with self._lock:
                self.dataset_items[item_id] = item  # an upsert, as Langfuse does for a given id
            return 200, item
        return None

    def start(self) -> LangfuseAPIReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, ctype: str, out: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _authorised(self, method: str, path: str, query, body) -> bool:
                record = {"method": method, "path": path, "query": {k: v[0] for k, v in query.items()},
                          "json": body, "auth_ok": self.headers.get("Authorization") == receiver.expected_auth}
                with receiver._lock:
                    receiver.requests.append(record)
                if not record["auth_ok"]:
                    self._send(401, "application/json", b'{"message": "bad credentials"}')
                return record["auth_ok"]

            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if not self._authorised("GET", url.path, query, None):
                    return
                status, payload = receiver._get(url.path, query)
                self._send(status, "application/json", json.dumps(payload).encode())

            def do_POST(self):  # noqa: N802
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = None
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    text = gzip.decompress(raw) if self.headers.get("Content-Encoding", "") == "gzip" else raw
                    body = json.loads(text or b"null")
                if not self._authorised("POST", url.path, parse_qs(url.query), body):
                    return
                handled = receiver._post_json(url.path, body) if isinstance(body, dict) else None
                if handled is not None:
                    status, payload = handled
                    self._send(status, "application/json", json.dumps(payload).encode())
                    return
                status, ctype, out = receiver._handle(url.path, raw, self.headers)  # OTLP traces, scores
                self._send(status, ctype, out)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="langfuse-api-receiver", daemon=True).start()
        return self
