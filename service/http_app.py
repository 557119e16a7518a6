"""Custom HTTP routes mounted in the Agent Server (langgraph.json "http.app").

- /newsroom/health: liveness ({"ok": true}, no credential); ?deep=1 (credential): each LLM
  endpoint and breaker
- /newsroom/telegram/webhook: Telegram's webhook (checks X-Telegram-Bot-Api-Secret-Token first)
- /newsroom/ui...: the server-rendered approval pages (service/web/), behind a login
- a background sweep of waiting approvals (reminder, then escalate or expire)

The app's middleware (service/http_guard.py) wraps every route of the server, langgraph's too.

Inside the server, langgraph_sdk.get_client() with no URL talks to this same server in-process.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from config import get_settings
from service.http_guard import ServerGuard
from service.web import routes as web_routes

log = logging.getLogger(__name__)


def _in_process_client():
    from langgraph_sdk import get_client

    return get_client()


class _Runtime:
    """What the routes share, made on first use (settings are read once the server has started)."""

    def __init__(self):
        self._receiver = None

    @property
    def receiver(self):
        if self._receiver is None:
            from service.telegram.webhook import WebhookReceiver

            self._receiver = WebhookReceiver(get_settings(), _in_process_client)
        return self._receiver

    async def close(self) -> None:
        if self._receiver is not None:
            await self._receiver.shutdown()


runtime = _Runtime()


DEEP_HEALTH_CACHE_S = 10.0  # a deep check calls every endpoint's /v1/models: at most this often
_deep_health: dict = {"at": 0.0, "body": None}


async def health(request: Request) -> JSONResponse:
    """Liveness without a credential; with ?deep=1 (a credential: it names internal endpoints)
    each LLM endpoint (models listed, adapters present) and its breaker."""
    if not request.query_params:
        return JSONResponse({"ok": True})
    if get_settings().identify(ServerGuard._credential(request.headers)) is None:
        return JSONResponse({"detail": "deep health needs a credential (Authorization: Bearer TOKEN)"},
                            status_code=401, headers={"www-authenticate": "Bearer"})
    from tools.llm import get_gateway

    gateway = get_gateway()
    body: dict = {"ok": True, "breakers": gateway.breaker_states()}
    if request.query_params.get("deep"):
        if time.monotonic() - _deep_health["at"] > DEEP_HEALTH_CACHE_S or _deep_health["body"] is None:
            _deep_health.update(at=time.monotonic(), body=await gateway.health(timeout_s=3.0))
        body["llm"] = _deep_health["body"]
        body["ok"] = all(info["reachable"] for info in body["llm"].values())
    return JSONResponse(body, status_code=200 if body["ok"] else 503)


async def telegram_webhook(request: Request) -> JSONResponse:
    # The secret first: a stranger's body is never read (the guard also caps it at 1 MiB).
    secret = request.headers.get("x-telegram-bot-api-secret-token")
    refusal = runtime.receiver.refusal(secret)
    if refusal is not None:
        status, body = refusal
        return JSONResponse(body, status_code=status)
    status, body = await runtime.receiver.handle(secret, await request.body())
    return JSONResponse(body, status_code=status)


async def _telegram_start_run(chat_id: int | None, topic: str, verb: str, reviewer: str):
    """A web decision on a run started from Telegram reports its progress in that chat too."""
    settings = get_settings()
    if chat_id is None or settings.telegram_bot_token is None:
        return None
    try:
        app = await runtime.receiver.application()
    except Exception as err:  # noqa: BLE001 - Telegram unreachable: the decision still goes through
        log.warning("Telegram unavailable, resuming without a chat report: %s", err)
        return None
    return app.bot_data["newsroom"].start_and_follow(chat_id, topic, verb, reviewer)


async def _sweep_forever(interval_s: float) -> None:
    """The graph cannot time itself out: this loop reminds, then escalates or expires."""
    from service.scheduling import sweep_once  # the deadline sweep plus scheduled publishes and recurring topics
    from storage.connect import get_database

    settings = get_settings()
    while True:
        await asyncio.sleep(interval_s)
        try:
            notifier = None
            if settings.telegram_bot_token is not None:
                from service.telegram.notifier import TelegramNotifier

                try:
                    notifier = TelegramNotifier((await runtime.receiver.application()).bot, settings)
                except Exception as err:  # noqa: BLE001 - Telegram down: deadlines still apply, events still logged
                    log.warning("approval sweep without Telegram notices: %s", err)
            report = await sweep_once(_in_process_client(), await get_database(), settings, notifier)
            if any(report.model_dump().values()):
                log.info("approval sweep: %s", report.summary())
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next pass tries again
            log.exception("approval sweep failed")


@asynccontextmanager
async def lifespan(_app: Starlette):
    interval = get_settings().approval_sweep_interval_s
    task = asyncio.create_task(_sweep_forever(interval), name="newsroom-approval-sweep") if interval > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await runtime.close()


app = Starlette(
    routes=[
        Route("/newsroom/health", health),
        Route("/newsroom/telegram/webhook", telegram_webhook, methods=["POST"]),
        *web_routes.routes(_in_process_client, _telegram_start_run),
    ],
    middleware=[Middleware(ServerGuard)],
    lifespan=lifespan,
)
