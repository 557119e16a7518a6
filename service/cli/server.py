"""The commands that run or check the service itself: serve (the Agent Server), health, db, llm-server."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from config import get_settings
from service.cli.common import run


def _refuse_busy_port(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed server's TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as err:
            raise click.ClickException(
                f"cannot serve on {host}:{port}: {err.strerror} (another `newsroom serve`? choose another "
                "port with --port or NEWSROOM_SERVER_PORT)") from None


@click.command()
@click.option("--port", type=int, default=None, help="default NEWSROOM_SERVER_PORT (2024)")
@click.option("--jobs", type=int, default=None, help="concurrent runs (NEWSROOM_SERVER_JOBS)")
def serve(port: int | None, jobs: int | None) -> None:
    """The Agent Server (`langgraph dev`, offline) on our langgraph.json and database; Studio connects to it."""
    settings = get_settings()
    settings.require_server_secrets()  # no credentials configured must never mean an open server
    # A busy port made `langgraph dev` sit there without serving or saying why.
    _refuse_busy_port("127.0.0.1", port or settings.server_port)
    root = Path(__file__).resolve().parents[2]
    exe = shutil.which("langgraph") or str(Path(sys.executable).with_name("langgraph"))
    env = dict(os.environ, LANGGRAPH_CLI_NO_ANALYTICS="1", LANGGRAPH_NO_VERSION_CHECK="1")
    # The Agent Server logs at our level unless LOG_LEVEL says otherwise (its per-request access
    # log at INFO was ~6% of its CPU under load).
    env.setdefault("LOG_LEVEL", settings.log_level)
    if not settings.database_url:
        # Start the embedded server here and keep it up for the Agent Server's lifetime.
        from storage.embedded import start_embedded

        env["DATABASE_URL"] = start_embedded(settings.pg_data_dir)
    from service.cli.maintenance import start_recovery_after_serve

    url = f"http://127.0.0.1:{port or settings.server_port}"
    # Once the server answers, resume runs a crash cut off (through the server, so Studio sees them).
    start_recovery_after_serve(url, echo=lambda msg: click.echo(msg, err=True),
                               api_key=settings.service_token.get_secret_value())
    workdir = _agent_server_workdir(settings, root)
    if Path(".env").is_file():  # the server runs elsewhere: hand it this folder's .env as environment
        from dotenv import dotenv_values

        for key, value in dotenv_values(".env").items():
            if value is not None:
                env.setdefault(key, value)
    # Paths the server's settings read, made absolute: it runs in its own folder.
    env["NEWSROOM_DATA_DIR"] = str(settings.data_dir.resolve())
    env["NEWSROOM_SITE_DIR"] = str(settings.site_dir.resolve())
    cmd = [exe, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
           "--port", str(port or settings.server_port), "--n-jobs-per-worker", str(jobs or settings.server_jobs),
           "--config", str(workdir / "langgraph.json")]
    click.echo("starting: " + " ".join(cmd))
    raise SystemExit(subprocess.call(cmd, cwd=workdir, env=env))


def _agent_server_workdir(settings, root: Path) -> Path:
    """The Agent Server's own folder in the data dir, with langgraph.json's paths made absolute.

    `langgraph dev` keeps its run queue and thread registry in ./.langgraph_api of its working
    folder and re-runs unfinished runs found there at start. Run from the checkout, every server
    (another data dir, a test, a benchmark) shared one queue and picked up each other's runs
    against the wrong database; one folder per data dir keeps a server's runs with its database.
    """
    workdir = (settings.data_dir / "agent-server").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = json.loads((root / "langgraph.json").read_text())

    def absolute(spec: str) -> str:
        path, _, attr = spec.partition(":")
        return f"{(root / path).resolve()}:{attr}" if attr else str((root / path).resolve())

    config["dependencies"] = [str(root)]
    config["graphs"] = {name: absolute(spec) for name, spec in config.get("graphs", {}).items()}
    if "checkpointer" in config:
        config["checkpointer"]["path"] = absolute(config["checkpointer"]["path"])
    if "http" in config:
        config["http"]["app"] = absolute(config["http"]["app"])
        # CORS only for the configured origins (Studio's by default): langgraph's default is "*".
        config["http"].setdefault("cors", {})["allow_origins"] = list(settings.cors_origins)
    if "auth" in config:
        config["auth"]["path"] = absolute(config["auth"]["path"])
    (workdir / "langgraph.json").write_text(json.dumps(config, indent=2))
    return workdir


@click.command()
@click.option("--json", "as_json", is_flag=True)
def health(as_json: bool) -> None:
    """Check the database and every LLM endpoint (models listed, adapters present, breaker state)."""
    from storage.connect import get_database
    from storage.db import DatabaseUnavailable
    from tools.llm import get_gateway
    from tools.local_llm import is_on_demand_server

    async def _health():
        try:  # a database that is down is one finding, not the end of the check
            db = await get_database()
            database = {"ok": True, "dialect": db.dialect, "version": db.server_version.split(" on ")[0]}
        except DatabaseUnavailable as err:
            database = {"ok": False, "error": str(err)}
        return {"database": database, "llm": await get_gateway().health()}

    report = run(_health())
    ok = report["database"]["ok"]
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        if not ok or not all(i["reachable"] for i in report["llm"].values()):
            raise SystemExit(1)
        return
    click.echo(f"database: {report['database']['dialect']} ({report['database']['version']})" if ok
               else f"database: UNREACHABLE ({report['database']['error']})")
    for info in report["llm"].values():
        state = "reachable" if info["reachable"] else f"UNREACHABLE ({info['error']})"
        click.echo(f"{info['provider']:<9} {info['base_url']}: {state}; breaker {info['breaker'].get('state')}")
        if not info["reachable"] and is_on_demand_server(get_settings(), info["base_url"]):
            click.echo("    (the local LLM server starts on demand for post/revise/demo and stops after; "
                       "`newsroom llm-server` keeps it up)")
        for r in info["routes"]:
            flag = {True: "listed", False: "NOT LISTED", None: "-"}[r["listed"]]
            click.echo(f"    {r['role']:<10} {r['model']:<32} {flag}")
            ok = ok and info["reachable"] and r["listed"] is not False
    if not ok:
        raise SystemExit(1)


@click.group()
def db() -> None:
    """The database: url, migrate, stop (embedded)."""


@db.command("url")
def db_url() -> None:
    """The database URL; the embedded server is left running for it (`newsroom db stop` stops it)."""
    settings = get_settings()
    if settings.database_url:
        click.echo(settings.database_url)
        return
    from storage.embedded import start_embedded

    # Left running: a URL to a server that stops as this command exits would be useless.
    click.echo(start_embedded(settings.pg_data_dir, keep_running=True))
    click.echo("(embedded PostgreSQL left running; `newsroom db stop` stops it)", err=True)


@db.command("migrate")
def db_migrate() -> None:
    from storage.db import Database, resolve_database_url
    from storage.migrate import migrate

    async def _m():
        s = get_settings()
        async with Database(resolve_database_url(s), s) as database:
            return database.dialect, await migrate(database)

    dialect, applied = run(_m())
    click.echo(f"{dialect}: applied {applied or 'nothing (up to date)'}")


@db.command("stop")
def db_stop() -> None:
    from storage.embedded import stop_embedded

    stopped = stop_embedded(get_settings().pg_data_dir)
    click.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@click.command("llm-server")
def llm_server() -> None:
    """Run the local LLM server (NEWSROOM_LOCAL_MODEL) in the foreground (Ctrl-C stops it)."""
    import time

    from tools.local_llm import LocalLLMError, LocalLLMServer, ensure_weights

    s = get_settings()
    try:
        ensure_weights(s.local_model, s.model_cache_dir, echo=click.echo)
    except LocalLLMError as err:
        raise click.ClickException(str(err)) from None
    with LocalLLMServer(port=s.local_llm_port, aliases=[s.writer_model, s.judge_model], threads=s.local_llm_threads,
                        model=s.local_model, cache_dir=s.model_cache_dir) as server:
        click.echo(f"serving {s.writer_model}, {s.judge_model} at {server.base_url} (Ctrl-C to stop)")
        try:
            while server.proc and server.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
