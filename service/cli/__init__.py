"""The `newsroom` command line (console script `newsroom`, or `python -m service.cli`).

posts.py: the commands on posts (operations of service/operations.py on the in-process engine);
server.py: serve, health, db, llm-server; bot.py: the Telegram bot and the approval sweep;
maintenance.py: recover, prune; training.py: local weights and the learning loop; ingest.py: the
retrieval corpus; render.py: how a run is shown; common.py: what every command shares. Commands
of other packages (the evals') join through the `newsroom.commands` entry points.
"""
from __future__ import annotations

import logging
import signal
import sys
from importlib.metadata import entry_points

import click

from config import ConfigError, get_settings
from service.cli import posts, server
from service.cli.bot import bot_command, sweep_command
from service.cli.common import Commands, setup_logging
from service.cli.maintenance import prune_command, recover_command
from service.cli.training import COMMANDS as TRAINING_COMMANDS

PLUGIN_GROUP = "newsroom.commands"


@click.group(cls=Commands)
def main() -> None:
    """newsroom: a durable multi-agent content engine."""
    try:
        get_settings()
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    setup_logging()
    # SIGTERM unwinds like Ctrl-C, so the local LLM server and the database are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def _register() -> None:
    for command in (posts.post, posts.approve, posts.revise, posts.edit, posts.reject, posts.retry, posts.cancel,
                    posts.status, posts.list_cmd, posts.demo, server.serve, server.health, server.db,
                    server.llm_server):
        main.add_command(command)
    main.add_command(bot_command, "bot")  # Telegram polling bot
    main.add_command(sweep_command, "sweep")  # approval deadline sweep
    for name, command in TRAINING_COMMANDS.items():  # local weights, the learning loop
        main.add_command(command, name)
    from service.cli.schedule import COMMANDS as schedule_commands  # scheduled publishes, recurring topics

    for name, command in schedule_commands.items():
        main.add_command(command, name)
    main.add_command(recover_command, "recover")  # crash recovery
    main.add_command(prune_command, "prune")  # checkpoint retention
    try:
        from service.cli.ingest import ingest_command
    except ImportError:
        pass  # a bare install without the embedding stack
    else:
        main.add_command(ingest_command, "ingest")
    _register_plugins()


def _register_plugins() -> None:
    """Commands other packages add (pyproject.toml [project.entry-points."newsroom.commands"]): the eval
    commands live with the evals they run (evals/ sits above service/: it drives the engine) and
    reach the CLI this way, so service/ never imports evals/."""
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            main.add_command(ep.load(), ep.name)
        except ImportError as err:  # a bare install without what the command needs (the embedding stack)
            logging.getLogger(__name__).debug("command %s unavailable: %s", ep.name, err)


_register()

__all__ = ["main"]
