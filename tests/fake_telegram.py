"""Our own small fake of the Telegram Bot API, over real HTTP (no maintained one works with PTB 22).

It speaks the wire format PTB uses ({base}/bot{token}/{method}, form-encoded or multipart, objects
as JSON strings), keeps the messages it was asked to send or edit per chat, refuses what Telegram
refuses (texts over 4096 characters, edits that change nothing, unknown messages), long-polls
getUpdates, records every call, and lets a test inject updates: commands, replies, button presses.
"""
from __future__ import annotations

import asyncio
import email.parser
import email.policy
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.server_fixtures import free_port

BOT_ID = 424242
TOKEN = f"{BOT_ID}:TEST-newsroom-token"
TEXT_LIMIT = 4096


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


def _decode(value: Any) -> Any:
    # PTB sends nested objects (reply_markup, reply_parameters) as JSON strings.
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    out: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        out[name] = {"filename": filename, "content": payload} if filename else payload.decode()
    return out


class FakeTelegram:
    def __init__(self, token: str = TOKEN):
        self.token = token
        self.port = free_port()
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], dict] = {}
        self.documents: dict[str, bytes] = {}
        self._updates: list[dict] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count] = {}
        self._callback_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        # sendMessage answers this many seconds AFTER it took the message: a client that times out
        # first saw its request cut off although Telegram has the message (a test sets it, then 0).
        self.stall_send_s = 0.0

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeTelegram:
        app = Starlette(routes=[Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"]),
                                Route("/file/bot{token}/{path:path}", self._file, methods=["GET"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     lifespan="off"))
        # Its own thread and loop: a test blocked in sync code never stalls the bot's HTTP calls.
        self._thread = threading.Thread(target=self._server.run, name="fake-telegram", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake Telegram server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
        if self._thread:
            self._thread.join(10)

    # --- the Bot API -----------------------------------------------------------------------------
    async def _endpoint(self, request: Request) -> JSONResponse:
        token, method = request.path_params["token"], request.path_params["method"]
        if token != self.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401)
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            params = _parse_multipart(ctype, body)
        elif ctype.startswith("application/json"):
            params = json.loads(body or b"{}")
        else:
            params = dict(parse_qsl(body.decode())) if body else dict(request.query_params)
        params = {k: _decode(v) for k, v in params.items()}
        with self._lock:
            self.calls.append(Call(method, params))
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self._ok(True)  # setMyCommands, deleteWebhook, setWebhook, sendChatAction ...
        try:
            result = await handler(params) if asyncio.iscoroutinefunction(handler) else handler(params)
        except _BadRequest as err:
            return JSONResponse({"ok": False, "error_code": 400, "description": f"Bad Request: {err}"}, status_code=400)
        if method == "sendMessage" and self.stall_send_s > 0:
            await asyncio.sleep(self.stall_send_s)
        return self._ok(result)

    async def _file(self, request: Request) -> Response:
        """A file download, as Telegram serves getFile's file_path under /file/bot<token>/."""
        if request.path_params["token"] != self.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401)
        file_id = request.path_params["path"].rsplit("/", 1)[-1]
        if file_id not in self.documents:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)
        return Response(self.documents[file_id], media_type="application/octet-stream")

    def _m_getFile(self, params) -> dict:
        file_id = str(params.get("file_id") or "")
        if file_id not in self.documents:
            raise _BadRequest("invalid file_id")
        return {"file_id": file_id, "file_unique_id": file_id, "file_size": len(self.documents[file_id]),
                "file_path": f"documents/{file_id}"}

    @staticmethod
    def _ok(result: Any) -> JSONResponse:
        return JSONResponse({"ok": True, "result": result})

    def _m_getMe(self, _params) -> dict:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Newsroom", "username": "newsroom_test_bot",
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _m_getUpdates(self, params) -> list[dict]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        while True:  # a long poll, as Telegram does: PTB would spin on an empty answer
            with self._lock:
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = list(self._updates)
            if ready or time.monotonic() >= deadline:
                return ready[: int(params.get("limit") or 100)]
            await asyncio.sleep(0.05)

    def _new_message(self, chat_id: int, **fields) -> dict:
        with self._lock:
            counter = self._message_ids.setdefault(chat_id, itertools.count(1))
            mid = next(counter)
            msg = {"message_id": mid, "date": int(time.time()), "chat": self._chat(chat_id),
                   "from": {"id": BOT_ID, "is_bot": True, "first_name": "Newsroom", "username": "newsroom_test_bot"},
                   **fields}
            self.messages[(chat_id, mid)] = msg
        return msg

    @staticmethod
    def _chat(chat_id: int) -> dict:
        return {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "title": f"chat {chat_id}"}

    def _reply_to(self, chat_id: int, params) -> dict:
        target = params.get("reply_to_message_id") or (params.get("reply_parameters") or {}).get("message_id")
        if target and (chat_id, int(target)) in self.messages:
            return {"reply_to_message": dict(self.messages[(chat_id, int(target))])}
        return {}

    @staticmethod
    def _markup(params) -> dict:
        # Telegram echoes only inline keyboards in Message.reply_markup; a ForceReply is kept aside.
        markup = params.get("reply_markup")
        if not markup:
            return {}
        if "inline_keyboard" in markup:
            return {"reply_markup": markup}
        return {"_reply_markup": markup}

    def _m_sendMessage(self, params) -> dict:
        text = str(params.get("text") or "")
        if not text:
            raise _BadRequest("message text is empty")
        if len(text.encode("utf-16-le")) // 2 > TEXT_LIMIT:
            raise _BadRequest("message is too long")
        chat_id = int(params["chat_id"])
        fields: dict[str, Any] = {"text": text, **self._reply_to(chat_id, params), **self._markup(params)}
        if params.get("parse_mode"):
            fields["_parse_mode"] = params["parse_mode"]
        return self._new_message(chat_id, **fields)

    def _m_sendDocument(self, params) -> dict:
        chat_id = int(params["chat_id"])
        doc = params.get("document")
        if not isinstance(doc, dict):
            raise _BadRequest("document must be an uploaded file")
        file_id = f"doc-{len(self.documents) + 1}"
        self.documents[file_id] = doc["content"]
        fields: dict[str, Any] = {"document": {"file_id": file_id, "file_unique_id": file_id,
                                               "file_name": doc["filename"], "file_size": len(doc["content"])}}
        if params.get("caption"):
            fields["caption"] = params["caption"]
        fields.update(self._markup(params))
        return self._new_message(chat_id, **fields)

    def _edit(self, params, **changes) -> dict:
        key = (int(params["chat_id"]), int(params["message_id"]))
        with self._lock:
            msg = self.messages.get(key)
            if msg is None:
                raise _BadRequest("message to edit not found")
            new = {**msg, **{k: v for k, v in changes.items() if v is not None}}
            if "reply_markup" in changes and changes["reply_markup"] is None:
                new.pop("reply_markup", None)
            if new == msg:
                raise _BadRequest("message is not modified: specified new message content and reply markup "
                                  "are exactly the same as a current content and reply markup of the message")
            new["edit_date"] = int(time.time())
            self.messages[key] = new
            return new

    def _m_editMessageText(self, params) -> dict:
        text = str(params.get("text") or "")
        if len(text.encode("utf-16-le")) // 2 > TEXT_LIMIT:
            raise _BadRequest("message is too long")
        return self._edit(params, text=text, reply_markup=params.get("reply_markup"))

    def _m_editMessageReplyMarkup(self, params) -> dict:
        return self._edit(params, reply_markup=params.get("reply_markup"))

    def _m_answerCallbackQuery(self, _params) -> bool:
        return True

    # --- what a test does ---------------------------------------------------------------------
    def inject(self, update: dict) -> dict:
        with self._lock:
            self._updates.append(update)
        return update

    def new_update(self, **content) -> dict:
        return {"update_id": next(self._update_ids), **content}

    @staticmethod
    def user(user_id: int, name: str = "") -> dict:
        return {"id": user_id, "is_bot": False, "first_name": name or f"user{user_id}", "username": name or f"user{user_id}"}

    def message_update(self, chat_id: int, user_id: int, text: str, *, reply_to: dict | None = None) -> dict:
        msg: dict[str, Any] = {"message_id": 100000 + next(self._update_ids), "date": int(time.time()),
                               "chat": self._chat(chat_id), "from": self.user(user_id), "text": text}
        if text.startswith("/"):
            # CommandHandler only fires on a bot_command entity at offset 0.
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        if reply_to is not None:
            msg["reply_to_message"] = reply_to
        return self.new_update(message=msg)

    def send_document(self, chat_id: int, user_id: int, filename: str, content: bytes, *,
                      reply_to: dict | None = None) -> dict:
        """A user's message with a document (stored here, so getFile and the download serve it)."""
        file_id = f"user-doc-{len(self.documents) + 1}"
        self.documents[file_id] = content
        msg: dict[str, Any] = {"message_id": 100000 + next(self._update_ids), "date": int(time.time()),
                               "chat": self._chat(chat_id), "from": self.user(user_id),
                               "document": {"file_id": file_id, "file_unique_id": file_id, "file_name": filename,
                                            "mime_type": "text/markdown", "file_size": len(content)}}
        if reply_to is not None:
            msg["reply_to_message"] = reply_to
        return self.inject(self.new_update(message=msg))

    def send_text(self, chat_id: int, user_id: int, text: str, *, reply_to: dict | None = None) -> dict:
        return self.inject(self.message_update(chat_id, user_id, text, reply_to=reply_to))

    def callback_update(self, chat_id: int, user_id: int, message: dict, data: str) -> dict:
        return self.new_update(callback_query={
            "id": f"cbq-{next(self._callback_ids)}", "from": self.user(user_id), "message": message,
            "chat_instance": f"ci-{chat_id}", "data": data})

    def press(self, chat_id: int, user_id: int, message: dict, data: str) -> dict:
        return self.inject(self.callback_update(chat_id, user_id, message, data))

    def calls_of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def chat_messages(self, chat_id: int) -> list[dict]:
        """The chat's messages as they look now (after edits), oldest first."""
        with self._lock:
            return [m for (c, _), m in sorted(self.messages.items()) if c == chat_id]

    def callback_answers(self, callback_query_id: str) -> list[dict]:
        return [c.params for c in self.calls_of("answerCallbackQuery")
                if c.params.get("callback_query_id") == callback_query_id]

    async def wait_for(self, predicate, *, timeout: float = 30.0, what: str = "condition"):
        """Poll predicate() (no arguments) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last calls: "
                             f"{[(c.method, str(c.params)[:160]) for c in self.calls[-8:]]}")


class _BadRequest(Exception):
    pass


@pytest.fixture(scope="session")
def fake_telegram():
    server = FakeTelegram().start()
    yield server
    server.stop()
