"""Cancel: one operation (service/operations.cancel) over either engine, wired into the three channels.
Telegram's /cancel is covered in tests/e2e/test_telegram_bot.py; here the CLI (`newsroom cancel`, the
in-process engine, a real subprocess) and the web page's Cancel form (the Agent Server)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from service.recovery import plan_recovery
from service.runner import NothingToCancel, cancel, current, start_post
from storage import posts
from tests.approval_fixtures import WEB_TOKEN
from tests.engine_fixtures import JUDGE
from tests.scripted_llm import Fault
from tests.server_fixtures import service_client

ROOT = Path(__file__).resolve().parents[2]


def _cli(pg_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, DATABASE_URL=pg_url), timeout=120)


async def test_newsroom_cancel_rejects_a_waiting_draft_once_through_the_ledger(db, llm, pg_url):
    snap = await start_post("Cancelled at the gate from the CLI", requester="ann")
    tid = snap.thread_id
    assert snap.waiting_for_human

    out = await asyncio.to_thread(_cli, pg_url, "cancel", tid[-8:], "--reviewer", "cal")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"cancelled: thread {tid} (its waiting draft rejected, by cal)" in out.stdout
    row = await posts.get_post(db, tid)
    assert row["status"] == "rejected" and row["status_reason"].startswith("cancelled by cal")
    decisions = [e for e in await posts.list_events(db, tid) if e["kind"] == "human_decision"]
    assert [(e["actor"], e["detail"]["decision"]) for e in decisions] == [("cal", "reject")]
    assert await posts.publications_for(db, tid) == []
    assert (await current(tid)).values["outcome"] == "rejected"

    again = await asyncio.to_thread(_cli, pg_url, "cancel", tid, "--reviewer", "cal")
    assert again.returncode == 1 and "Already finished (rejected). Nothing changed." in again.stderr


async def test_cancel_of_a_cut_off_run_ends_its_graph_so_recovery_leaves_it(db, llm):
    llm.script(Fault.hang(20), model=JUDGE)
    tid, topic = str(uuid.uuid4()), "Cancelled while judging"
    task = asyncio.create_task(start_post(topic, thread_id=tid))
    for _ in range(1500):
        if any(topic in r.prompt for r in llm.requests_for(JUDGE)):
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await current(tid)).next  # cut off: pending desks, recovery would resume it

    done = await cancel(tid, reviewer="dan")
    assert done.decision is None and done.runs_stopped == 0
    row = await posts.get_post(db, tid)
    assert row["status"] == "rejected" and row["status_reason"].startswith("cancelled by dan")
    after = await current(tid)
    assert after.values["outcome"] == "rejected" and not after.next  # the supervisor sent it to the end
    [(_, plan)] = await plan_recovery(db, thread_ids=[tid])
    assert plan.action == "finished"
    with pytest.raises(NothingToCancel, match="Already finished"):
        await cancel(tid, reviewer="dan")


@pytest.mark.slow
async def test_the_web_page_cancels_a_waiting_draft(approval_server, approval_script, db):
    client = service_client(approval_server.url)
    tid = (await client.threads.create(metadata={"source": "web-test"}))["thread_id"]
    await client.runs.wait(tid, "newsroom", input={"topic": "Cancelled on the web", "requester": "web-test",
                                                   "source": "api"})
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
    base, auth = f"{approval_server.url}/newsroom/ui", {"Authorization": f"Bearer {WEB_TOKEN}"}
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
        page = await http.get(f"{base}/runs/{tid}", headers=auth)
        assert "id=cancel" in page.text
        refused = await http.post(f"{base}/runs/{tid}/cancel", data={"reviewer": "eve"})
        assert refused.status_code == 403
        cross = await http.post(f"{base}/runs/{tid}/cancel", data={"reviewer": "eve"},
                                headers={**auth, "Origin": "https://evil.example"})
        assert cross.status_code == 403
        assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
        done = await http.post(f"{base}/runs/{tid}/cancel", data={"reviewer": "gus"}, headers=auth)
        assert done.status_code == 303
        flash = (await http.get(approval_server.url + done.headers["location"], headers=auth)).text
        assert "Cancelled: the waiting draft was rejected" in flash
        for _ in range(200):
            if (await posts.get_post(db, tid))["status"] == "rejected":
                break
            await asyncio.sleep(0.05)
        row = await posts.get_post(db, tid)
        assert row["status"] == "rejected" and row["status_reason"].startswith("cancelled by gus (web)")
        assert await posts.publications_for(db, tid) == []
        page = await http.get(f"{base}/runs/{tid}", headers=auth)
        assert "id=cancel" not in page.text
        again = await http.post(f"{base}/runs/{tid}/cancel", data={"reviewer": "gus"}, headers=auth)
        assert "Already finished (rejected)" in (await http.get(approval_server.url + again.headers["location"],
                                                                headers=auth)).text
