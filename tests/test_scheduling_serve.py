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
from tests.engine_fixtures import JUDGE, PASSING, WRITER, draft_reply
from tests.scripted_llm import ScriptedLLM
from tests.server_fixtures import AgentServer, free_port, service_client

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sched_llm(pg_url):
    with ScriptedLLM(models=[WRITER, JUDGE]) as server:
        server.on_chat(draft_reply, model=WRITER)
        server.on_chat(lambda req: PASSING, model=JUDGE)
        yield server


@pytest.fixture(scope="module")
def sched_env(pg_url, sched_llm, tmp_path_factory) -> dict:
    return dict(os.environ, DATABASE_URL=pg_url, NEWSROOM_LLM_BASE_URL=sched_llm.base_url,
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


async def test_scheduled_publish_survives_a_server_kill_and_fires_once_at_its_time(db, sched_env, session_dir):
    server = AgentServer(free_port(), sched_env, session_dir / "sched-server.log").start()
    try:
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
        assert "no scheduled publishes" in _cli(sched_env, "scheduled").stdout or \
            s.schedule_id not in _cli(sched_env, "scheduled").stdout
    finally:
        server.stop()


async def _published(db, tid):
    post = await posts.get_post(db, tid)
    return post if post and post["status"] == "published" else None
