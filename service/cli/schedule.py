"""`newsroom approve --at`, `newsroom scheduled` and `newsroom schedule-topic` / `newsroom recurring`
(the logic is service/scheduling.py's; this file only parses and prints)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from agents.schedule import ScheduleError, format_local, parse_topics
from service.cli.common import run


def _reviewer_default() -> str:
    return os.environ.get("USER", "cli")


def approve_at(thread_id: str, *, reviewer: str, when: str, tz: str | None, draft_version: int | None) -> None:
    """Approve the waiting draft now; the sweep publishes it at WHEN (called by `newsroom approve --at`)."""
    from service import scheduling
    from service.engine import PendingInterrupt
    from service.runner import current
    from storage.connect import get_database

    async def _go():
        snap = await current(thread_id)
        if not snap.waiting_for_human:
            raise click.ClickException(f"thread {thread_id} is not waiting for approval: nothing to schedule")
        waiting = ((snap.interrupt or {}).get("draft") or {}).get("version")
        if draft_version is not None and waiting != draft_version:
            raise click.ClickException(f"thread {thread_id} waits at draft v{waiting}, not v{draft_version}: "
                                       f"nothing changed; read it first (newsroom status {thread_id})")
        db = await get_database()
        zone = await scheduling.effective_timezone(db, explicit=tz)
        pending = PendingInterrupt(thread_id=thread_id, interrupt_id=snap.interrupt_id or "", payload=snap.interrupt,
                                   checkpoint_id=snap.checkpoint_id)
        return await scheduling.schedule_pending(db, pending, when=when, tz=zone, reviewer=reviewer, via="cli")

    try:
        s = run(_go())
    except (ScheduleError, scheduling_refused()) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"approved by {reviewer}; publishes at {format_local(s.publish_at, s.timezone)} "
               f"(schedule {s.schedule_id})\n"
               "the approval sweep fires it (`newsroom serve`, `newsroom bot` or `newsroom sweep` must be running, "
               "or run `newsroom scheduled --fire-due`)\n"
               f"change it: newsroom scheduled --reschedule {s.schedule_id} --at TIME  |  "
               f"newsroom scheduled --cancel {s.schedule_id}")


def print_schedule_of(thread_id: str) -> None:
    """`newsroom status`: the post's pending scheduled publish, if it has one."""
    from storage import schedules
    from storage.connect import get_database

    async def _go():
        return await schedules.live_schedule_for(await get_database(), thread_id)

    s = run(_go())
    if s is not None:
        click.echo(f"scheduled: approved by {s.scheduled_by} via {s.scheduled_via}; publishes at "
                   f"{format_local(s.publish_at, s.timezone)} (schedule {s.schedule_id})"
                   + (f"; last try failed: {s.last_error}" if s.last_error else ""))


def settle_send(thread_id: str, *, destination: str, sent: bool, actor: str) -> None:
    """`newsroom retry --resend DEST | --sent DEST`: a human's word on a send whose outcome was unknown."""
    from storage.connect import get_database
    from tools.publish import settle_uncertain_send

    async def _go():
        return await settle_uncertain_send(await get_database(), thread_id, destination, sent=sent, actor=actor)

    n = run(_go())
    if n == 0:
        raise click.ClickException(f"no send to {destination} of unknown outcome for {thread_id}: nothing to settle")
    click.echo(f"{destination}: {'recorded as arrived' if sent else 'will be sent again'} ({n} send)")


def scheduling_refused():
    from service.scheduling import ScheduleRefused

    return ScheduleRefused


@click.command("scheduled")
@click.option("--reschedule", "move_id", default=None, metavar="ID", help="move this schedule to --at TIME")
@click.option("--cancel", "cancel_id", default=None, metavar="ID",
              help="cancel this schedule: the draft waits for a decision again")
@click.option("--at", "when", default=None, metavar="TIME", help="the new time (with --reschedule)")
@click.option("--tz", default=None, metavar="ZONE", help="IANA zone TIME is read in (default: the schedule's)")
@click.option("--fire-due", is_flag=True, help="publish the due ones now, in this process (no Agent Server needed)")
@click.option("--reviewer", default=_reviewer_default, show_default="$USER")
def scheduled_command(move_id: str | None, cancel_id: str | None, when: str | None, tz: str | None, fire_due: bool,
                      reviewer: str) -> None:
    """List the scheduled publishes (soonest first); reschedule or cancel one."""
    from service import scheduling
    from storage.connect import get_database

    if move_id and not when:
        raise click.UsageError("--reschedule ID needs --at TIME")
    if move_id and cancel_id:
        raise click.UsageError("--reschedule and --cancel: one at a time")

    async def _go():
        db = await get_database()
        if move_id:
            s = await scheduling.reschedule(db, move_id, when=when, tz=tz, actor=reviewer)
            return [f"rescheduled {s.schedule_id}: publishes at {format_local(s.publish_at, s.timezone)}"]
        if cancel_id:
            s = await scheduling.cancel(db, cancel_id, actor=reviewer)
            return [f"canceled {s.schedule_id}: thread {s.thread_id} waits for a decision again "
                    f"(newsroom status {s.thread_id})"]
        if fire_due:
            report = scheduling.ScheduleSweepReport()
            fired = await scheduling.fire_due(db, scheduling.in_process_resume(), report=report)
            return [f"fired {len(fired)}: " + ", ".join(s.thread_id for s in fired)] + [f"error: {e}" for e in report.errors]
        rows = await scheduling.list_scheduled(db)
        return [scheduling.describe(s) for s in rows] or ["no scheduled publishes"]

    try:
        lines = run(_go())
    except (ScheduleError, scheduling_refused()) as err:
        raise click.ClickException(str(err)) from None
    for line in lines:
        click.echo(line)


@click.command("schedule-topic")
@click.option("--every", required=True, type=click.Choice(["daily", "weekly"]))
@click.option("--at", "at", required=True, metavar="WHEN", help='"09:00" (daily) or "Mon 09:00" (weekly)')
@click.option("--topics", "topics_file", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="a file with one topic per line (# comments); - reads stdin")
@click.option("--tz", default=None, metavar="ZONE", help="IANA zone of --at (default NEWSROOM_TIMEZONE)")
@click.option("--chat", "chat_id", type=int, default=None, help="the Telegram chat its drafts are announced in")
@click.option("--policy", type=click.Choice(["human", "escalations_only"]), default=None,
              help="approval policy of its runs (default: the server's)")
@click.option("--requester", default=_reviewer_default, show_default="$USER")
def schedule_topic_command(every: str, at: str, topics_file: str, tz: str | None, chat_id: int | None,
                           policy: str | None, requester: str) -> None:
    """Start a post from a topic list on a schedule (one topic per run, in order, then round again)."""
    from service import scheduling
    from storage.connect import get_database

    text = click.get_text_stream("stdin").read() if topics_file == "-" else Path(topics_file).read_text("utf-8")
    try:
        topics = parse_topics(text)
    except ScheduleError as err:
        raise click.ClickException(str(err)) from None

    async def _go():
        db = await get_database()
        zone = await scheduling.effective_timezone(db, explicit=tz)
        return await scheduling.add_recurring(db, every=every, at=at, topics=topics, tz=zone, created_by=requester,
                                              chat_id=chat_id, run_overrides={"approval_policy": policy} if policy else None)

    try:
        rec = run(_go())
    except ScheduleError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"recurring {rec.recurring_id}: {len(rec.topics)} topics, first post at "
               f"{format_local(rec.next_run_at, rec.timezone)}; `newsroom recurring` lists, "
               f"`newsroom recurring --cancel {rec.recurring_id}` stops it")


@click.command("recurring")
@click.option("--cancel", "cancel_id", default=None, metavar="ID", help="stop this recurring topic list")
@click.option("--fire-due", is_flag=True, help="start the due ones now, in this process (no Agent Server needed)")
@click.option("--reviewer", default=_reviewer_default, show_default="$USER")
def recurring_command(cancel_id: str | None, fire_due: bool, reviewer: str) -> None:
    """List the recurring topic lists; cancel one."""
    from service import scheduling
    from storage import schedules
    from storage.connect import get_database

    async def _go():
        db = await get_database()
        if cancel_id:
            rec = await schedules.cancel_recurring(db, cancel_id.strip().lower(), canceled_by=reviewer)
            if rec is None:
                raise click.ClickException(f"no active recurring topic list {cancel_id[:40]!r} (`newsroom recurring`)")
            return [f"canceled {rec.recurring_id}"]
        if fire_due:
            report = scheduling.ScheduleSweepReport()
            started = await scheduling.start_recurring(db, scheduling.in_process_start_post(), report=report)
            return [f"started {len(started)}: " + ", ".join(o.thread_id for o in started)] + [
                f"error: {e}" for e in report.errors]
        return [scheduling.describe_recurring(r) for r in await schedules.recurring(db)] or ["no recurring topics"]

    for line in run(_go()):
        click.echo(line)


COMMANDS = {"scheduled": scheduled_command, "schedule-topic": schedule_topic_command, "recurring": recurring_command}
