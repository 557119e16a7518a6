"""Scheduling (issue 16, item 4), in-process: the pure time rules; on the embedded PostgreSQL with
the scripted LLM over HTTP: approve now / publish at a time through the approval ledger, fired once
by concurrent sweepers, never re-delivered early by recovery, rescheduled and canceled; recurring
topics started once per occurrence. `newsroom serve` across a restart: tests/test_scheduling_serve.py."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from agents import schedule as rules
from agents.schedule import ScheduleError
from service import scheduling
from service.engine import PendingInterrupt
from service.recovery import plan_recovery
from service.runner import resume, start_post
from storage import approvals, posts, schedules

NOW = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)  # a Tuesday


# --- the pure rules ------------------------------------------------------------------------------------

def test_typed_times_are_read_in_the_zone_and_offsets_are_kept():
    assert rules.parse_publish_time("2026-12-02 09:00", tz="Europe/Berlin", now=NOW) == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    assert rules.parse_publish_time("2026-12-02T09:00+05:30", tz="Europe/Berlin", now=NOW) == \
        datetime(2026, 12, 2, 3, 30, tzinfo=UTC)
    assert rules.parse_publish_time("2026-12-02T09:00Z", tz="America/New_York", now=NOW) == \
        datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    assert rules.parse_publish_time("tomorrow 09:00", tz="America/New_York", now=NOW) == \
        datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    # a bare clock time already passed today (16:00 UTC = 17:00 Berlin) means tomorrow
    assert rules.parse_publish_time("10:00", tz="Europe/Berlin", now=NOW) == datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    assert rules.parse_publish_time("in 90 s", tz="UTC", now=NOW) == NOW + timedelta(seconds=90)
    assert rules.parse_publish_time("in 2 h", tz="UTC", now=NOW) == NOW + timedelta(hours=2)


@pytest.mark.parametrize("text,match", [
    ("2026-11-30 09:00", "in the past"), ("yesterday", "cannot read"), ("", "no time given"),
    ("2026-13-01 09:00", "cannot read"), ("25:00", "not a time of day"), ("2028-01-01 09:00", "more than a year"),
    ("2027-03-28 02:30", "does not exist"),  # Berlin's clocks go 02:00 -> 03:00 that day
    ("2027-10-31 02:30", "happens twice"),
])
def test_bad_times_get_a_clear_error(text, match):
    with pytest.raises(ScheduleError, match=match):
        rules.parse_publish_time(text, tz="Europe/Berlin", now=NOW)


def test_zone_names_are_validated():
    assert rules.zone("Europe/Berlin").key == "Europe/Berlin"
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "Europe/Berlin; DROP"):
        with pytest.raises(ScheduleError, match="time zone"):
            rules.zone(bad)
    from config import ConfigError, Settings

    assert Settings(timezone="Asia/Tokyo").timezone == "Asia/Tokyo"
    with pytest.raises((ValueError, ConfigError), match="unknown time zone"):
        Settings(timezone="Nowhere/Land")


def test_recurrence_next_occurrence_in_the_zone_and_offered_times_are_ahead():
    weekly = rules.parse_recurrence("weekly", "Mon 09:00", tz="Europe/Berlin")
    assert rules.next_occurrence(weekly, NOW) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert rules.next_occurrence(weekly, datetime(2026, 12, 7, 8, 0, tzinfo=UTC)) == datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
    daily = rules.parse_recurrence("daily", "18:30", tz="UTC")
    assert rules.next_occurrence(daily, NOW) == datetime(2026, 12, 1, 18, 30, tzinfo=UTC)
    with pytest.raises(ScheduleError, match="day and a time"):
        rules.parse_recurrence("weekly", "09:00", tz="UTC")
    with pytest.raises(ScheduleError, match="daily or weekly"):
        rules.parse_recurrence("hourly", "09:00", tz="UTC")
    offered = rules.offered_times(NOW, "Europe/Berlin")
    assert len(offered) >= 3 and all(when > NOW for _, when in offered)
    assert rules.parse_topics("# list\nA\n\nB\n") == ["A", "B"] and rules.topic_for(["A", "B"], 3) == "B"
    with pytest.raises(ScheduleError, match="empty"):
        rules.parse_topics("# nothing\n")


# --- through the database ------------------------------------------------------------------------------

def _pending(snap) -> PendingInterrupt:
    return PendingInterrupt(thread_id=snap.thread_id, interrupt_id=snap.interrupt_id, payload=snap.interrupt,
                            checkpoint_id=snap.checkpoint_id)


async def _waiting_post(topic: str):
    snap = await start_post(topic, requester="sched-test")
    assert snap.waiting_for_human, snap.values.get("error")
    return snap


async def _make_due(db, schedule_id: str) -> None:
    # The time rules refuse a past time; a test makes a row due by moving it, as time would.
    async def _work(conn):
        await conn.execute("UPDATE publish_schedules SET publish_at = now() - INTERVAL '1 second' "
                           "WHERE schedule_id = %(s)s", {"s": schedule_id})

    await db.transaction(_work)


async def test_scheduled_approval_waits_recovery_leaves_it_and_concurrent_sweepers_publish_it_once(db, llm):
    snaps = [await _waiting_post(f"Scheduled publish {i}") for i in range(3)]
    made = [await scheduling.schedule_pending(db, _pending(s), when="in 1 h", tz="Europe/Berlin", reviewer="ann",
                                              via="cli") for s in snaps]
    for s, snap in zip(made, snaps):
        gate = await approvals.get_gate(db, s.gate_id)
        assert (gate.decision, gate.decided_by, gate.resumed_at) == ("approve", "ann", None)
        assert s.state == "scheduled" and s.timezone == "Europe/Berlin"
    # Not due: nothing fires, and recovery does not deliver the claimed approval early.
    assert await scheduling.fire_due(db, scheduling.in_process_resume()) == []
    planned = {p.thread_id: p.action for _, p in await plan_recovery(db, thread_ids=[s.thread_id for s in snaps])}
    assert set(planned.values()) == {"waiting"}, planned
    # Another channel's answer is refused as decided, naming the time.
    with pytest.raises(scheduling.ScheduleRefused, match="scheduled to publish at"):
        await scheduling.schedule_pending(db, _pending(snaps[0]), when="in 2 h", tz="UTC", reviewer="bob", via="cli")
    for s in made:
        await _make_due(db, s.schedule_id)
    # Two sweepers at once: every schedule is fired by exactly one of them.
    a, b = await asyncio.gather(scheduling.fire_due(db, scheduling.in_process_resume(), holder="sweeper-a"),
                                scheduling.fire_due(db, scheduling.in_process_resume(), holder="sweeper-b"))
    assert sorted(s.schedule_id for s in a + b) == sorted(s.schedule_id for s in made)
    for s in made:
        post = await posts.get_post(db, s.thread_id)
        assert post["status"] == "published"
        assert len(await posts.publications_for(db, s.thread_id)) == 1
        fired = [e for e in await posts.list_events(db, s.thread_id) if e["kind"] == "publish_schedule_fired"]
        assert len(fired) == 1
        row = await schedules.get_schedule(db, s.schedule_id)
        assert row.state == "fired" and row.run_id
    # A later pass fires nothing again.
    assert await scheduling.fire_due(db, scheduling.in_process_resume()) == []


async def test_reschedule_and_cancel_and_after_cancel_the_draft_can_be_decided_again(db, llm):
    snap = await _waiting_post("Reschedule then cancel")
    s = await scheduling.schedule_pending(db, _pending(snap), when="in 3 h", tz="UTC", reviewer="ann", via="cli")
    with pytest.raises(ScheduleError, match="in the past"):
        await scheduling.reschedule(db, s.schedule_id, when="2020-01-01 09:00", tz=None, actor="ann")
    moved = await scheduling.reschedule(db, s.schedule_id, when="in 5 h", tz="Asia/Tokyo", actor="ann")
    assert moved.publish_at > s.publish_at and moved.timezone == "Asia/Tokyo"
    assert [x.schedule_id for x in await scheduling.list_scheduled(db)].count(s.schedule_id) == 1
    canceled = await scheduling.cancel(db, s.schedule_id, actor="ann")
    assert canceled.state == "canceled"
    with pytest.raises(scheduling.ScheduleRefused, match="canceled already"):
        await scheduling.cancel(db, s.schedule_id, actor="ann")
    gate = await approvals.get_gate(db, s.gate_id)
    assert gate.decided_at is None and gate.resume_token is None  # released: the draft waits again
    after = await resume(snap.thread_id, {"action": "approve", "reviewer": "bob"})
    assert after.values["outcome"] == "published"
    kinds = [e["kind"] for e in await posts.list_events(db, snap.thread_id)]
    assert kinds.count("publish_scheduled") == 1 and "publish_rescheduled" in kinds and "publish_schedule_canceled" in kinds
    with pytest.raises(scheduling.ScheduleRefused, match="No scheduled publish"):
        await scheduling.cancel(db, "nope", actor="ann")


async def test_a_fire_whose_resume_cannot_start_is_put_back_and_tried_again(db, llm):
    snap = await _waiting_post("Fire that fails to start")
    s = await scheduling.schedule_pending(db, _pending(snap), when="in 1 h", tz="UTC", reviewer="ann", via="cli")
    await _make_due(db, s.schedule_id)

    async def _refused(*_a, **_k):
        raise RuntimeError("server said 409: thread busy")

    report = scheduling.ScheduleSweepReport()
    assert len(await scheduling.fire_due(db, _refused, report=report)) == 1
    assert report.fired == [] and "thread busy" in report.errors[0]
    row = await schedules.get_schedule(db, s.schedule_id)
    assert row.state == "scheduled" and "thread busy" in row.last_error
    await scheduling.fire_due(db, scheduling.in_process_resume())
    assert (await posts.get_post(db, snap.thread_id))["status"] == "published"


async def test_chat_time_zone_is_stored_validated_and_used(db):
    assert await scheduling.effective_timezone(db, chat_id=4242) == "UTC"
    assert await scheduling.set_chat_timezone(db, 4242, "Europe/Berlin", updated_by="ann") == "Europe/Berlin"
    assert await scheduling.effective_timezone(db, chat_id=4242) == "Europe/Berlin"
    with pytest.raises(ScheduleError):
        await scheduling.set_chat_timezone(db, 4242, "Not/AZone", updated_by="ann")
    assert await scheduling.effective_timezone(db, chat_id=4242) == "Europe/Berlin"


async def test_recurring_topic_starts_one_post_per_occurrence_with_two_sweepers(db, llm):
    rec = await scheduling.add_recurring(db, every="weekly", at="Mon 09:00", topics=["Weekly A", "Weekly B"],
                                         tz="Europe/Berlin", created_by="ann",
                                         now=datetime.now(UTC) - timedelta(days=8))
    assert rec.next_run_at < datetime.now(UTC)  # an occurrence is due
    a, b = await asyncio.gather(scheduling.start_recurring(db, scheduling.in_process_start_post()),
                                scheduling.start_recurring(db, scheduling.in_process_start_post()))
    mine = [o for o in a + b if o.recurring_id == rec.recurring_id]
    assert len(mine) == 1 and mine[0].topic == "Weekly A"
    assert mine[0].thread_id == schedules.occurrence_thread_id(rec.recurring_id, 0)
    post = await posts.get_post(db, mine[0].thread_id)
    assert post["topic"] == "Weekly A" and post["status"] == "awaiting_approval"
    after = await schedules.get_recurring(db, rec.recurring_id)
    assert after.next_index == 1 and after.next_run_at > datetime.now(UTC)
    assert after.next_run_at.astimezone(rules.zone("Europe/Berlin")).strftime("%a %H:%M") == "Mon 09:00"
    assert [o for o in await scheduling.start_recurring(db, scheduling.in_process_start_post())
            if o.recurring_id == rec.recurring_id] == []
    assert (await schedules.cancel_recurring(db, rec.recurring_id, canceled_by="ann")).canceled_at is not None
    assert rec.recurring_id not in [r.recurring_id for r in await schedules.recurring(db)]


async def test_a_crash_between_the_fire_and_the_resume_is_redelivered_by_recovery_once(db, llm):
    from service.recovery import recover

    snap = await _waiting_post("Crash mid-fire")
    s = await scheduling.schedule_pending(db, _pending(snap), when="in 1 h", tz="UTC", reviewer="ann", via="cli")
    await _make_due(db, s.schedule_id)
    # The sweeper fires the row and dies before it starts the run (what a SIGKILL there leaves).
    assert [x.schedule_id for x in await schedules.fire_due(db, holder="dead-sweeper")] == [s.schedule_id]
    planned = {p.thread_id: p.action for _, p in await plan_recovery(db, thread_ids=[snap.thread_id])}
    assert planned == {snap.thread_id: "redelivered"}
    report = await recover(thread_ids=[snap.thread_id])
    assert report.redelivered == [snap.thread_id]
    assert (await posts.get_post(db, snap.thread_id))["status"] == "published"
    assert len(await posts.publications_for(db, snap.thread_id)) == 1
    # Neither a later sweep nor a second recovery publishes it again.
    assert await scheduling.fire_due(db, scheduling.in_process_resume()) == []
    again = await recover(thread_ids=[snap.thread_id])
    assert again.redelivered == [] and len(await posts.publications_for(db, snap.thread_id)) == 1


async def test_two_processes_firing_at_once_publish_each_schedule_once(db, llm, pg_url):
    """Two `newsroom scheduled --fire-due` processes started together on the same due schedules."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    snaps = [await _waiting_post(f"Two processes fire {i}") for i in range(2)]
    made = [await scheduling.schedule_pending(db, _pending(s), when="in 1 h", tz="UTC", reviewer="ann", via="cli")
            for s in snaps]
    for s in made:
        await _make_due(db, s.schedule_id)
    env = dict(os.environ, DATABASE_URL=pg_url)
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-m", "service.cli", "scheduled", "--fire-due"], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    fired = [line for out, _ in outs for line in out.splitlines() if line.startswith("fired ")]
    assert sum(int(line.split()[1].rstrip(":")) for line in fired) >= len(made)  # other tests' due rows may join
    for s in made:
        assert (await posts.get_post(db, s.thread_id))["status"] == "published"
        assert len(await posts.publications_for(db, s.thread_id)) == 1
        events = await posts.list_events(db, s.thread_id)
        assert [e["kind"] for e in events].count("publish_schedule_fired") == 1
        assert [e["kind"] for e in events].count("human_decision") == 1
