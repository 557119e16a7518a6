"""`newsroom recover` and `newsroom prune`: resume runs a crash cut off; checkpoint retention."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass

import click

from config import get_settings


def _run(coro):
    return asyncio.run(coro)  # errors a user can act on are reported by the CLI group (service.cli.common.Commands)


async def _recover_then_close(**kwargs):
    from service.recovery import recover
    from storage.connect import close_database

    try:
        return await recover(**kwargs)
    finally:
        await close_database()


def run_recovery(*, stale_after_s: float = 0.0, echo=None, **kwargs):
    """A full recovery pass from synchronous code (CLI start-up, `newsroom serve`): plans first,
    starts the local LLM only if some run really needs driving. Returns the RecoveryReport."""
    from tools.local_llm import local_llm_if_needed

    plan = _run(_recover_then_close(stale_after_s=stale_after_s, dry_run=True, **kwargs))
    if plan.acted == 0:
        return plan
    if echo:
        echo(f"recovery: {plan.acted} run(s) to resume ...")
    with local_llm_if_needed(get_settings()):
        return _run(_recover_then_close(stale_after_s=stale_after_s, **kwargs))


def start_recovery_after_serve(server_url: str, *, ready_timeout_s: float = 300.0, echo=print,
                               api_key: str | None = None):
    """For `newsroom serve`: once the Agent Server answers /ok, one recovery pass whose runs go
    THROUGH that server (service.recovery.server_driver), in a daemon thread, so serving starts at
    once. Returns the thread (its .report attribute holds the RecoveryReport when done)."""
    import threading

    import httpx

    def _work() -> None:
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{server_url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            echo("recovery skipped: the Agent Server did not answer /ok")
            return

        async def _go():
            from langgraph_sdk import get_client

            from service.recovery import server_driver

            return await _recover_then_close(driver=server_driver(get_client(url=server_url, api_key=api_key)))

        try:
            worker.report = asyncio.run(_go())
            echo("recovery: " + worker.report.summary())
        except Exception as err:  # noqa: BLE001 - serving goes on; `newsroom recover` can be run by hand
            echo(f"recovery failed: {err}")

    worker = threading.Thread(target=_work, name="newsroom-recovery", daemon=True)
    worker.report = None
    worker.start()
    return worker


@click.command("recover")
@click.option("--stale-after", "stale_after_s", type=float, default=0.0, show_default=True,
              help="only posts not updated for this many seconds (a run in another live process is left alone)")
@click.option("--window", "terminal_window_s", type=float, default=86400.0, show_default=True,
              help="also check finished posts updated within this many seconds (a step after the status commit)")
@click.option("--jobs", "concurrency", type=int, default=4, show_default=True, help="threads resumed at once")
@click.option("--thread", "thread_ids", multiple=True, help="only this thread (repeatable)")
@click.option("--dry-run", is_flag=True, help="show what would be resumed; change nothing")
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
def recover_command(stale_after_s: float, terminal_window_s: float, concurrency: int, thread_ids: tuple[str, ...],
                    dry_run: bool, as_json: bool) -> None:
    """Resume every run a crash cut off, from its last checkpoint; runs waiting for approval stay waiting.

    Idempotent, and safe while other recoverers or runs are going (a run lease per thread)."""
    def show(plan) -> None:
        if not as_json and plan.action not in ("finished",):
            click.echo(f"  {plan.thread_id}  {plan.action:<12} {plan.detail}")

    kwargs = dict(terminal_window_s=terminal_window_s, concurrency=concurrency,
                  thread_ids=list(thread_ids) or None, on_plan=show)
    started = time.monotonic()
    if dry_run:
        report = _run(_recover_then_close(stale_after_s=stale_after_s, dry_run=True, **kwargs))
    else:
        report = run_recovery(stale_after_s=stale_after_s, echo=None if as_json else click.echo, **kwargs)
    if as_json:
        click.echo(json.dumps({**report.as_dict(), "dry_run": dry_run,
                               "seconds": round(time.monotonic() - started, 2)}))
        return
    click.echo(("would: " if dry_run else "recovery: ") + report.summary())
    for tid, err in report.errors.items():
        click.echo(f"  error {tid}: {err}", err=True)
    if report.errors:
        raise SystemExit(1)


@dataclass
class PruneReport:
    threads: int
    pruned_checkpoints: int
    before: dict
    after: dict
    table_bytes_before: int
    table_bytes_after: int
    seconds: float


async def prune_finished(*, keep: int, min_age_s: float = 0.0, dry_run: bool = False,
                         thread_ids: list[str] | None = None) -> PruneReport:
    """Keep the last `keep` checkpoints of every finished thread (published, rejected, failed).

    Threads waiting or running are never touched: their next step forks from the latest
    checkpoint, and Studio's time travel on them needs the history."""
    from storage import maintenance
    from storage.checkpointer import checkpointer
    from storage.connect import get_database

    db = await get_database()
    async with checkpointer():  # the checkpoint tables exist from here on
        pass
    t0 = time.perf_counter()
    threads = await maintenance.finished_threads(db, min_age_s=min_age_s)
    if thread_ids is not None:
        threads = [t for t in threads if t in set(thread_ids)]
    before = await maintenance.checkpoint_footprint(db, threads)
    bytes_before = await maintenance.checkpoint_table_bytes(db)
    pruned = 0
    if not dry_run:
        for tid in threads:
            pruned += await maintenance.keep_last_checkpoints(db, tid, keep)
    after = await maintenance.checkpoint_footprint(db, threads)
    return PruneReport(threads=len(threads), pruned_checkpoints=pruned, before=asdict(before), after=asdict(after),
                       table_bytes_before=bytes_before, table_bytes_after=await maintenance.checkpoint_table_bytes(db),
                       seconds=round(time.perf_counter() - t0, 3))


@click.command("prune")
@click.option("--keep", type=click.IntRange(min=1), default=3, show_default=True,
              help="checkpoints kept per finished thread (the newest)")
@click.option("--min-age", "min_age_s", type=float, default=3600.0, show_default=True,
              help="only threads finished at least this many seconds ago")
@click.option("--dry-run", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def prune_command(keep: int, min_age_s: float, dry_run: bool, as_json: bool) -> None:
    """Checkpoint retention: keep the last N checkpoints of finished threads, delete the rest."""
    async def _go():
        from storage.connect import close_database

        try:
            return await prune_finished(keep=keep, min_age_s=min_age_s, dry_run=dry_run)
        finally:
            await close_database()

    r = _run(_go())
    if as_json:
        click.echo(json.dumps({**asdict(r), "keep": keep, "dry_run": dry_run}))
        return
    b, a = r.before, r.after
    age = f" (finished at least {min_age_s:g}s ago; --min-age 0 for all)" if min_age_s > 0 else ""
    click.echo(f"{r.threads} finished threads{age}: checkpoints {b['checkpoints']} -> {a['checkpoints']}, "
               f"writes {b['writes']} -> {a['writes']}, blobs {b['blobs']} -> {a['blobs']}, "
               f"row bytes {b['bytes']:,} -> {a['bytes']:,}" + (" (dry run)" if dry_run else "")
               + f" in {r.seconds:.2f}s")
    if not dry_run:
        click.echo("disk space returns to PostgreSQL for reuse; VACUUM FULL (or pg_repack) gives it back to the OS")
