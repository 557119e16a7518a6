"""Webhook mode: the Agent Server's custom HTTP app (service/http_app.py) hands each POST of
/newsroom/telegram/webhook here; the same handlers as polling mode run before the answer."""
from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable
from typing import Any

from telegram import Update
from telegram.ext import Application

from config import Settings
from service.telegram.handlers import build_application


class WebhookReceiver:
    """Webhook mode: the custom HTTP app hands each POST here. Checks Telegram's secret-token header,
    validates the body and runs the same handlers before answering (so Telegram's retry of a failed
    delivery is the only way an update is processed twice, and our ledger makes that harmless)."""

    def __init__(self, settings: Settings, client_factory: Callable[[], Any]):
        self.settings = settings
        self._client_factory = client_factory
        self._app: Application | None = None
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.settings.telegram_bot_token is not None and self.settings.telegram_webhook_secret is not None

    async def application(self) -> Application:
        async with self._lock:
            if self._app is None:
                app = build_application(self.settings, self._client_factory(), webhook=True)
                await app.initialize()
                await app.start()
                self._app = app
        return self._app

    def refusal(self, secret_header: str | None) -> tuple[int, dict] | None:
        """Why a delivery is refused before its body is read, or None."""
        if not self.enabled:
            return 404, {"ok": False, "error": "webhook mode is off: set TELEGRAM_BOT_TOKEN and "
                                               "NEWSROOM_TELEGRAM_WEBHOOK_SECRET"}
        expected = self.settings.telegram_webhook_secret.get_secret_value()
        if not secret_header or not hmac.compare_digest(secret_header.encode(), expected.encode()):
            return 403, {"ok": False, "error": "wrong or missing X-Telegram-Bot-Api-Secret-Token"}
        return None

    async def handle(self, secret_header: str | None, body: bytes) -> tuple[int, dict]:
        if (refused := self.refusal(secret_header)) is not None:
            return refused
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            return 400, {"ok": False, "error": f"body is not JSON: {err}"}
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return 400, {"ok": False, "error": "not a Telegram Update: an object with an integer update_id is required"}
        app = await self.application()
        try:
            update = Update.de_json(data, app.bot)
        except Exception as err:  # noqa: BLE001 - PTB raises AttributeError, TypeError, ... on mistyped fields
            return 400, {"ok": False, "error": f"malformed update {data.get('update_id')}: {type(err).__name__}: {err}"}
        await app.process_update(update)  # handler errors go to on_error, which tells the chat
        return 200, {"ok": True}

    async def shutdown(self) -> None:
        if self._app is not None:
            await self._app.stop()
            await self._app.shutdown()
            self._app = None
