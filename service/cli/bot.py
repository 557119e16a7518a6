"""`newsroom bot` (Telegram polling mode, or registering the webhook) and `newsroom sweep`
(the approval deadline pass, for cron when the Agent Server's own sweep is off)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import click

from config import get_settings

log = logging.getLogger(__name__)


def _client(url: str | None):
    """The Agent Server as the service identity (NEWSROOM_SERVICE_TOKEN)."""
    from langgraph_sdk import get_client

    settings = get_settings()
    if settings.service_token is None:
        raise click.ClickException("set NEWSROOM_SERVICE_TOKEN (the same as the Agent Server's): every route of "
                                   "`newsroom serve` needs a credential")
    return get_client(url=url or settings.agent_server_url, api_key=settings.service_token.get_secret_value())


async def _sweep_loop(app, settings, url: str | None) -> None:
    from service.scheduling import sweep_once  # the deadline sweep plus scheduled publishes and recurring topics
    from service.telegram.notifier import TelegramNotifier
    from storage.connect import get_database

    while True:
        await asyncio.sleep(settings.approval_sweep_interval_s)
        try:
            report = await sweep_once(_client(url), await get_database(), settings, TelegramNotifier(app.bot, settings))
            if any(report.model_dump().values()):
                log.info("approval sweep: %s", report.summary())
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - try again next interval
            log.exception("approval sweep failed")


async def _reach_telegram(settings) -> str:
    """getMe before anything else: a token Telegram refuses is a clear error at once; an unreachable
    Bot API (network down, a typo in the URL) is retried with a warning per attempt, for
    NEWSROOM_TELEGRAM_CONNECT_WAIT_S (0 = until it answers). Returns the bot's @username."""
    from telegram import Bot
    from telegram.error import InvalidToken, NetworkError
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, stop_never, wait_exponential

    base = settings.telegram_api_base_url.rstrip("/")
    wait_s = settings.telegram_connect_wait_s

    def _warn(state) -> None:
        log.warning("Telegram Bot API at %s not reachable (%s); retrying in %.0f s", base,
                    state.outcome.exception(), state.next_action.sleep if state.next_action else 0)

    bot = Bot(settings.telegram_bot_token.get_secret_value(), base_url=f"{base}/bot", base_file_url=f"{base}/file/bot")
    started = time.monotonic()
    try:
        async for attempt in AsyncRetrying(retry=retry_if_exception_type(NetworkError),
                                           stop=stop_after_delay(wait_s) if wait_s > 0 else stop_never,
                                           wait=wait_exponential(multiplier=1, max=60), before_sleep=_warn,
                                           reraise=True):
            with attempt:
                async with bot:  # initialize() is getMe
                    return bot.username
    except InvalidToken:
        raise click.ClickException(f"the Telegram Bot API at {base} refused the bot token: check TELEGRAM_BOT_TOKEN "
                                   "(BotFather's /token shows it)") from None
    except NetworkError as err:
        waited = time.monotonic() - started
        raise click.ClickException(f"cannot reach the Telegram Bot API at {base}: {err} (tried for {waited:.0f} s; "
                                   "check the network and NEWSROOM_TELEGRAM_API_BASE_URL)") from None
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


@click.command("bot")
@click.option("--server", "server_url", default=None, help="Agent Server URL (default NEWSROOM_AGENT_SERVER_URL)")
@click.option("--set-webhook", "webhook_url", default=None, metavar="URL",
              help="register URL (https://HOST/newsroom/telegram/webhook) with Telegram and exit")
@click.option("--sweep/--no-sweep", default=True, show_default=True,
              help="also run the approval deadline sweep every NEWSROOM_APPROVAL_SWEEP_INTERVAL_S")
def bot_command(server_url: str | None, webhook_url: str | None, sweep: bool) -> None:
    """The Telegram bot in polling mode (or --set-webhook URL for webhook mode), a client of the Agent Server."""
    from telegram import Update

    from service.telegram.handlers import build_application

    settings = get_settings()
    if settings.telegram_bot_token is None:
        raise click.ClickException("set TELEGRAM_BOT_TOKEN (the token BotFather gave you)")
    if not settings.telegram_allowed_chats:
        click.echo("warning: NEWSROOM_TELEGRAM_ALLOWED_CHATS is empty: every chat will be refused "
                   "(send /help to the bot to learn a chat's id)", err=True)
    username = asyncio.run(_reach_telegram(settings))
    app = build_application(settings, _client(server_url))
    if webhook_url:
        if settings.telegram_webhook_secret is None:
            raise click.ClickException("set NEWSROOM_TELEGRAM_WEBHOOK_SECRET first: the route refuses requests without it")

        async def _register() -> None:
            async with app:
                await app.bot.set_webhook(webhook_url, secret_token=settings.telegram_webhook_secret.get_secret_value(),
                                          allowed_updates=["message", "callback_query"])
        asyncio.run(_register())
        click.echo(f"webhook set: {webhook_url} (the Agent Server must have the same token and secret)")
        return
    async def _close_db(_application) -> None:
        from storage.connect import close_database

        await close_database()  # the approval ledger's pool, before the loop goes away

    app.post_shutdown = _close_db
    if sweep and settings.approval_sweep_interval_s > 0:
        tasks: list[asyncio.Task] = []

        async def _start_sweep(application) -> None:
            tasks.append(asyncio.create_task(_sweep_loop(application, settings, server_url), name="approval-sweep"))

        async def _stop_sweep(_application) -> None:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        app.post_init, app.post_stop = _start_sweep, _stop_sweep
    click.echo(f"newsroom bot: @{username} polling Telegram; Agent Server {server_url or settings.agent_server_url}; "
               f"{len(settings.telegram_allowed_chats)} allowed chats, {len(settings.telegram_approvers)} approvers")
    # run_polling deletes any webhook first, so one token serves one mode at a time. Telegram was
    # reachable a moment ago: a blip during the bootstrap is retried, not fatal.
    app.run_polling(allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY], bootstrap_retries=-1)


@click.command("sweep")
@click.option("--server", "server_url", default=None, help="Agent Server URL (default NEWSROOM_AGENT_SERVER_URL)")
@click.option("--loop", "loop_s", type=float, default=None, metavar="SECONDS", help="repeat every SECONDS")
def sweep_command(server_url: str | None, loop_s: float | None) -> None:
    """Remind, then escalate or expire approvals waiting past NEWSROOM_APPROVAL_DEADLINE_S."""
    from service.scheduling import sweep_once  # the deadline sweep plus scheduled publishes and recurring topics
    from storage.connect import get_database

    settings = get_settings()

    async def _once() -> None:
        notifier, bot = None, None
        if settings.telegram_bot_token is not None:
            from telegram import Bot

            from service.telegram.notifier import TelegramNotifier

            base = settings.telegram_api_base_url.rstrip("/")
            bot = Bot(settings.telegram_bot_token.get_secret_value(), base_url=f"{base}/bot",
                      base_file_url=f"{base}/file/bot")
            await bot.initialize()
            notifier = TelegramNotifier(bot, settings)
        try:
            while True:
                report = await sweep_once(_client(server_url), await get_database(), settings, notifier)
                click.echo(f"approval sweep: {report.summary()}")
                for err in report.errors:
                    click.echo(f"  error: {err}", err=True)
                if loop_s is None:
                    return
                await asyncio.sleep(loop_s)
        finally:
            from storage.connect import close_database

            await close_database()
            if bot is not None:
                await bot.shutdown()

    asyncio.run(_once())  # ConfigError / DatabaseUnavailable: reported by the CLI group
