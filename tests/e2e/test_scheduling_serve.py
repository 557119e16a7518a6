"""Scheduling across the real boundaries: `newsroom serve` (langgraph dev) with its approval sweep,
the `newsroom` CLI as a subprocess, the embedded PostgreSQL. A publish scheduled a few seconds
ahead survives a SIGKILL of the server and fires exactly once, at or after its time, when the
server is started again."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import posts, schedules
from tests.approval_fixtures import WEB_TOKEN
from tests.engine_fixtures import JUDGE, PASSING, WRITER, draft_reply
from tests.scripted_llm import ScriptedLLM
from tests.server_fixtures import AgentServer, free_port, service_client

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sched_llm(pg_url):
    with ScriptedLLM(models=[WRITER, JUDGE]) as server:
        server.on_chat(draft_reply, model=WRITER)
        server.on_chat(lambda req: PASSING, model=JUDGE)
        yield server


@pytest.fixture(scope="module")
def sched_env(pg_url, sched_llm, tmp_path_factory, fake_telegram) -> dict:
    from tests.fake_telegram import TOKEN

    # The server's sweep tells a scheduled post's chat that it publishes now (through the fake Bot API).
    return dict(os.environ, DATABASE_URL=pg_url, NEWSROOM_LLM_BASE_URL=sched_llm.base_url,
                TELEGRAM_BOT_TOKEN=TOKEN, NEWSROOM_TELEGRAM_API_BASE_URL=fake_telegram.url, NEWSROOM_WEB_TOKEN=WEB_TOKEN,
                NEWSROOM_LLM_PROVIDER="llamacpp", NEWSROOM_LLM_MAX_ATTEMPTS="1", NEWSROOM_LOG_LEVEL="INFO",
                NEWSROOM_APPROVAL_SWEEP_INTERVAL_S="0.5", NEWSROOM_TIMEZONE="Europe/Berlin",
                NEWSROOM_DATA_DIR=str(tmp_path_factory.mktemp("sched-serve")),
                NEWSROOM_SITE_DIR=str(tmp_path_factory.mktemp("sched-site")))


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def _kill(server: AgentServer) -> None:
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


async def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def sched_server(sched_env, session_dir):
    server = AgentServer(free_port(), sched_env, session_dir / "sched-server.log").start()
    yield server
    server.stop()


def _running(server: AgentServer) -> AgentServer:
    if server.proc is None or server.proc.poll() is not None:
        server.start()
    return server


async def test_scheduled_publish_survives_a_server_kill_and_fires_once_at_its_time(db, sched_env, sched_server):
    server = _running(sched_server)
    if True:
        client = service_client(server.url)
        thread = await client.threads.create(metadata={"source": "test"})
        tid = thread["thread_id"]
        await client.runs.wait(tid, "newsroom", input={"topic": "Scheduled across a restart", "requester": "t",
                                                       "source": "test"})
        state = await client.threads.get_state(tid)
        assert state["next"] == ["human_approval"], server.log_tail()

        # A bad time is refused, nothing claimed.
        bad = _cli(sched_env, "approve", tid, "--at", "2020-01-01 09:00", "--reviewer", "ann")
        assert bad.returncode != 0 and "in the past" in bad.stderr
        bad = _cli(sched_env, "approve", tid, "--at", "next blue moon", "--reviewer", "ann")
        assert bad.returncode != 0 and "cannot read" in bad.stderr
        assert await schedules.live_schedule_for(db, tid) is None

        ok = _cli(sched_env, "approve", tid, "--at", "in 3 s", "--reviewer", "ann")
        assert ok.returncode == 0, ok.stderr
        assert "publishes at" in ok.stdout and "(Europe/Berlin)" in ok.stdout
        _kill(server)  # before its time: the schedule lives in the database only
        s = await schedules.live_schedule_for(db, tid)
        assert s is not None and s.state == "scheduled"
        listed = _cli(sched_env, "scheduled")
        assert s.schedule_id in listed.stdout and "Scheduled across a restart" in listed.stdout
        status = _cli(sched_env, "status", tid)
        assert f"schedule {s.schedule_id}" in status.stdout

        # Its time passes while no server runs: nothing is published.
        await asyncio.sleep(max(0.0, (s.publish_at - datetime.now(UTC)).total_seconds()) + 1.0)
        assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
        assert await posts.publications_for(db, tid) == []

        server.start()
        post = await _wait_for(lambda: _published(db, tid), 120, "the scheduled publish after the restart")
        assert post["status"] == "published"
        pubs = await posts.publications_for(db, tid)
        assert len(pubs) == 1 and pubs[0]["published_at"] >= s.publish_at
        await asyncio.sleep(2.0)  # a few more sweeps: none fires it again
        assert len(await posts.publications_for(db, tid)) == 1
        events = await posts.list_events(db, tid)
        assert [e["kind"] for e in events].count("publish_schedule_fired") == 1
        decisions = [e for e in events if e["kind"] == "human_decision"]
        assert len(decisions) == 1 and decisions[0]["actor"] == "ann"
        assert (await schedules.get_schedule(db, s.schedule_id)).state == "fired"
        assert s.schedule_id not in _cli(sched_env, "scheduled").stdout


async def _published(db, tid):
    post = await posts.get_post(db, tid)
    return post if post and post["status"] == "published" else None


# --- Telegram: the "⏰ Publish at…" button, a typed time, /scheduled, /timezone ------------------------------

async def test_telegram_publish_at_button_reply_scheduled_and_timezone(db, sched_server, fake_telegram):
    from tests.approval_fixtures import APPROVER, GROUP_CHAT, NOT_APPROVER, polling_bot
    from tests.e2e.test_telegram_bot import buttons, gate_message, start_post

    fake = fake_telegram
    server = _running(sched_server)

    def reply_with(marker: str):
        return lambda: next((m for m in reversed(fake.chat_messages(GROUP_CHAT)) if marker in (m.get("text") or "")), None)

    async with polling_bot(fake.url, server.url):
        # /timezone: validated, set by an approver only, then used to read and show times
        fake.send_text(GROUP_CHAT, APPROVER, "/timezone Mars/Olympus")
        await fake.wait_for(reply_with("unknown time zone 'Mars/Olympus'"), what="the zone refusal")
        fake.send_text(GROUP_CHAT, NOT_APPROVER, "/timezone UTC")
        await fake.wait_for(reply_with("Only approvers can change this chat's time zone"), what="the refusal")
        fake.send_text(GROUP_CHAT, APPROVER, "/timezone Asia/Tokyo")
        await fake.wait_for(reply_with("time zone is now Asia/Tokyo"), what="the zone set")

        # 1) an offered time from the button, then /scheduled move brings it to a few seconds ahead
        tid = await start_post(fake, GROUP_CHAT, APPROVER, "Scheduled from Telegram by a button")
        gate = await gate_message(fake, GROUP_CHAT, tid)
        assert "at…" in buttons(gate)
        fake.press(GROUP_CHAT, APPROVER, gate, buttons(gate)["at…"])
        offer = await fake.wait_for(reply_with("⏰ Publish draft v1 of “Scheduled from Telegram by a button”"),
                                    what="the offered times")
        assert "times in Asia/Tokyo" in offer["text"]
        times = [b["callback_data"] for row in offer["reply_markup"]["inline_keyboard"] for b in row]
        assert len(times) >= 3
        fake.press(GROUP_CHAT, NOT_APPROVER, offer, times[0])  # refused, nothing claimed
        fake.press(GROUP_CHAT, APPROVER, offer, times[0])  # "in 1 h"
        note = await fake.wait_for(reply_with("⏰ Approved by"), what="the scheduled note")
        assert "(Asia/Tokyo)" in note["text"]
        s = await schedules.live_schedule_for(db, tid)
        assert s is not None and s.scheduled_via == "telegram" and s.timezone == "Asia/Tokyo"
        assert "reply_markup" not in fake.messages[(GROUP_CHAT, gate["message_id"])]  # gate buttons gone
        # the Agent Server thread shows the schedule (Studio lists thread metadata)
        thread = await service_client(server.url).threads.get(tid)
        assert thread["metadata"]["scheduled_publish_at"] == s.publish_at.isoformat()

        fake.send_text(GROUP_CHAT, NOT_APPROVER, "/scheduled")
        await fake.wait_for(reply_with(s.schedule_id), what="the /scheduled list")
        fake.send_text(GROUP_CHAT, NOT_APPROVER, f"/scheduled cancel {s.schedule_id}")
        await fake.wait_for(reply_with("Only approvers can move or cancel"), what="the refusal")
        fake.send_text(GROUP_CHAT, APPROVER, f"/scheduled move {s.schedule_id} 2020-01-01 09:00")
        await fake.wait_for(reply_with("is in the past"), what="the past-time refusal")
        fake.send_text(GROUP_CHAT, APPROVER, f"/scheduled move {s.schedule_id} in 2 s")
        await fake.wait_for(reply_with(f"Schedule {s.schedule_id} now publishes at"), what="the move")
        post = await _wait_for(lambda: _published(db, tid), 60, "the moved publish")
        assert len(await posts.publications_for(db, tid)) == 1 and post["status"] == "published"
        await fake.wait_for(reply_with("⏰ Publishing “Scheduled from Telegram by a button” now"),
                            what="the sweep's notice in the chat")

        # 2) a typed time, as a reply to the offer; a bad one first
        tid2 = await start_post(fake, GROUP_CHAT, APPROVER, "Scheduled from Telegram by a reply")
        gate2 = await gate_message(fake, GROUP_CHAT, tid2)
        fake.press(GROUP_CHAT, APPROVER, gate2, buttons(gate2)["at…"])
        offer2 = await fake.wait_for(reply_with("⏰ Publish draft v1 of “Scheduled from Telegram by a reply”"),
                                     what="the offered times")
        fake.send_text(GROUP_CHAT, APPROVER, "whenever", reply_to=offer2)
        await fake.wait_for(reply_with("cannot read 'whenever'"), what="the unreadable-time refusal")
        assert await schedules.live_schedule_for(db, tid2) is None
        fake.send_text(GROUP_CHAT, APPROVER, "in 2 s", reply_to=offer2)
        await _wait_for(lambda: _published(db, tid2), 60, "the typed-time publish")
        assert len(await posts.publications_for(db, tid2)) == 1
        # a press on the old gate now answers "already decided"
        fake.press(GROUP_CHAT, APPROVER, gate2, buttons(gate2)["approve"])
        await asyncio.sleep(1.0)
        assert len(await posts.publications_for(db, tid2)) == 1


# --- the web page's "publish at" field --------------------------------------------------------------------

async def test_web_publish_at_field_schedules_and_the_sweep_publishes_once(db, sched_server):
    import httpx

    server = _running(sched_server)
    client = service_client(server.url)
    tid = (await client.threads.create(metadata={"source": "web-test"}))["thread_id"]
    await client.runs.wait(tid, "newsroom", input={"topic": "Scheduled on the web page", "requester": "web-test",
                                                   "source": "api"})
    base, auth = f"{server.url}/newsroom/ui", {"Authorization": f"Bearer {WEB_TOKEN}"}
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
        page = await http.get(f"{base}/runs/{tid}", headers=auth)
        assert "id=publish-at" in page.text and "value='Europe/Berlin'" in page.text
        gate_id = page.text.split("name=gate_id value='")[1].split("'")[0]

        async def _post(**fields):
            resp = await http.post(f"{base}/runs/{tid}/decide", headers=auth,
                                   data={"action": "approve", "gate_id": gate_id, "reviewer": "wes", **fields})
            assert resp.status_code == 303
            return (await http.get(server.url + resp.headers["location"], headers=auth)).text

        assert "cannot read" in await _post(publish_at="next blue moon")
        assert "unknown time zone" in await _post(publish_at="in 2 s", tz="Mars/Olympus")
        assert await schedules.live_schedule_for(db, tid) is None  # nothing claimed by the refusals
        shown = await _post(publish_at="in 2 s", tz="America/New_York")
        assert "Approved: publishes at" in shown and "(America/New_York)" in shown
        s = await schedules.live_schedule_for(db, tid)
        if s is not None:  # not fired yet: the page says when
            page = await http.get(f"{base}/runs/{tid}", headers=auth)
            assert "id=scheduled" in page.text or (await _published(db, tid))
        await _wait_for(lambda: _published(db, tid), 60, "the web-scheduled publish")
        assert len(await posts.publications_for(db, tid)) == 1
        decided = [e for e in await posts.list_events(db, tid) if e["kind"] == "human_decision"]
        assert [e["actor"] for e in decided] == ["wes (web)"]


# --- recurring topics through the server's sweep ------------------------------------------------------------

async def test_recurring_topic_list_is_started_by_the_server_sweep_once(db, sched_env, sched_server, tmp_path):
    server = _running(sched_server)
    topics = tmp_path / "topics.txt"
    topics.write_text("# weekly explainers\nRecurring: what GQA shares\nRecurring: what MQA gives up\n")
    bad = _cli(sched_env, "schedule-topic", "--every", "weekly", "--at", "09:00", "--topics", str(topics))
    assert bad.returncode != 0 and "needs a day and a time" in bad.stderr
    made = _cli(sched_env, "schedule-topic", "--every", "weekly", "--at", "Mon 09:00", "--topics", str(topics),
                "--requester", "rita")
    assert made.returncode == 0, made.stderr
    rid = made.stdout.split()[1].rstrip(":")
    rec = await schedules.get_recurring(db, rid)
    assert rec is not None and rec.timezone == "Europe/Berlin" and rec.next_run_at > datetime.now(UTC)
    assert rid in _cli(sched_env, "recurring").stdout

    async def _due(conn):  # its Monday comes (the test moves the clock's hand, not the clock)
        await conn.execute("UPDATE recurring_topics SET next_run_at = now() WHERE recurring_id = %(r)s", {"r": rid})

    await db.transaction(_due)
    tid = schedules.occurrence_thread_id(rid, 0)

    async def _at_gate():
        post = await posts.get_post(db, tid)
        return post if post and post["status"] == "awaiting_approval" else None

    post = await _wait_for(_at_gate, 90, "the recurring post at its gate")
    assert post["topic"] == "Recurring: what GQA shares" and post["requester"] == "rita"
    state = await service_client(server.url).threads.get_state(tid)
    assert state["next"] == ["human_approval"]  # an Agent Server run: Studio shows it
    await asyncio.sleep(1.5)  # more sweeps: no second post for the same occurrence
    after = await schedules.get_recurring(db, rid)
    assert after.next_index == 1 and after.last_thread_id == tid and after.next_run_at > datetime.now(UTC)
    assert await posts.get_post(db, schedules.occurrence_thread_id(rid, 1)) is None
    canceled = _cli(sched_env, "recurring", "--cancel", rid)
    assert canceled.returncode == 0 and rid not in _cli(sched_env, "recurring").stdout
