"""The webhook destination beside the static site, in-process (embedded PostgreSQL, the scripted LLM,
a real local HTTP receiver): signed, keyed, retried with backoff, and each destination published
exactly once with its own ledger row; a failed destination is retried without touching the others."""
from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, Settings, reset_settings_cache
from service.runner import resume, retry, start_post
from storage import posts
from tests.webhook_receiver import WebhookReceiver
from tools.publish import PublishFailed, Rendered, WebhookDestination, webhook_signature

SECRET = "whk-test-secret-5c2e9a7f1b3d8e604a2c"


@pytest.fixture
def receiver():
    server = WebhookReceiver(SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def two_destinations(receiver, monkeypatch):
    monkeypatch.setenv("NEWSROOM_PUBLISH_DESTINATIONS", "static_site,webhook")
    monkeypatch.setenv("NEWSROOM_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("NEWSROOM_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("NEWSROOM_WEBHOOK_BACKOFF_S", "0.05")
    monkeypatch.setenv("NEWSROOM_WEBHOOK_MAX_ATTEMPTS", "4")
    reset_settings_cache()
    yield receiver
    monkeypatch.undo()
    reset_settings_cache()


def test_a_webhook_is_never_configured_unsigned_and_its_signature_is_hmac_sha256():
    with pytest.raises((ValueError, ConfigError), match="NEWSROOM_WEBHOOK_SECRET"):
        Settings(publish_destinations="static_site,webhook", webhook_url="http://127.0.0.1:9/x")
    with pytest.raises((ValueError, ConfigError), match="at least 32"):
        Settings(publish_destinations="webhook", webhook_url="http://127.0.0.1:9/x", webhook_secret="short")
    with pytest.raises((ValueError, ConfigError), match="name each destination once"):
        Settings(publish_destinations="static_site,ftp")
    import hashlib
    import hmac

    assert webhook_signature("k", "1700000000", b"{}") == "sha256=" + hmac.new(
        b"k", b"1700000000.{}", hashlib.sha256).hexdigest()


def test_a_4xx_fails_at_once_and_an_unreachable_receiver_after_its_attempts(receiver):
    item = Rendered(publish_key="k1", slug="s", title="T", markdown="# T", html="<h1>T</h1>")
    receiver.fail_next, receiver.fail_status = 1, 422
    with pytest.raises(PublishFailed, match="HTTP 422"):
        WebhookDestination(receiver.url, SECRET, max_attempts=5, backoff_s=0.01).publish(item)
    assert len(receiver.deliveries) == 1  # not retried
    with pytest.raises(PublishFailed, match="no 2xx after 3 attempts"):
        WebhookDestination("http://127.0.0.1:9/closed", SECRET, max_attempts=3, backoff_s=0.01,
                           timeout_s=2).publish(item)


async def test_published_to_both_once_each_the_webhook_after_two_failures(db, llm, two_destinations):
    receiver = two_destinations
    receiver.fail_next = 2  # the first two attempts get 503
    snap = await start_post("Published to the site and a webhook")
    done = await resume(snap.thread_id, {"action": "approve", "reviewer": "ann"})
    assert done.values["outcome"] == "published"
    tid = snap.thread_id
    rows = await posts.publications_for(db, tid)
    assert sorted(r["destination"] for r in rows) == ["static_site", "webhook"]
    site, hook = sorted(rows, key=lambda r: r["destination"])
    assert Path(site["location"]).exists()
    assert hook["publish_key"] == f"{site['publish_key']}:webhook" and hook["location"].endswith(hook["publish_key"])
    # Three attempts, all signed, all with the same Idempotency-Key; the receiver kept the post once.
    assert [d.status for d in receiver.deliveries] == [503, 503, 201]
    assert all(d.signature_ok for d in receiver.deliveries)
    assert {d.idempotency_key for d in receiver.deliveries} == {hook["publish_key"]}
    assert receiver.accepted[hook["publish_key"]]["title"] == done.values["publication"]["title"]
    assert receiver.accepted[hook["publish_key"]]["markdown"] == Path(site["location"]).with_suffix(".md").read_text()
    moves = [e for e in await posts.list_events(db, tid) if e["kind"] == "transition" and e["to_status"] == "published"]
    assert len(moves) == 1
    assert [d["destination"] for d in done.values["publication"]["destinations"]] == ["static_site", "webhook"]


async def test_a_failed_webhook_fails_the_post_and_retry_publishes_only_it(db, llm, two_destinations):
    receiver = two_destinations
    receiver.fail_next = 4  # every attempt of the first publish fails
    snap = await start_post("A webhook that is down")
    tid = snap.thread_id
    after = await resume(tid, {"action": "approve", "reviewer": "ann"})
    assert after.values["outcome"] == "failed" and "webhook" in after.values["error"]
    post = await posts.get_post(db, tid)
    assert post["status"] == "failed" and "no 2xx after 4 attempts" in post["status_reason"]
    rows = await posts.publications_for(db, tid)
    assert [r["destination"] for r in rows] == ["static_site"]  # the site took it; its row stays
    site_page = Path(rows[0]["location"])
    written = site_page.stat().st_mtime_ns
    attempts = len(receiver.deliveries)
    # `newsroom status` shows each destination's state (the environment names both destinations).
    import os
    import subprocess
    import sys

    status = subprocess.run([sys.executable, "-m", "service.cli", "status", tid], cwd=Path(__file__).resolve().parents[2],
                            env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "(static_site, key " in status.stdout
    assert "not published yet: webhook (newsroom retry publishes only the missing ones)" in status.stdout
    again = await retry(tid, actor="ops")
    assert again.values["outcome"] == "published"
    rows = await posts.publications_for(db, tid)
    assert sorted(r["destination"] for r in rows) == ["static_site", "webhook"]
    assert site_page.stat().st_mtime_ns == written  # the site was not published again
    assert len(receiver.deliveries) == attempts + 1 and receiver.deliveries[-1].status == 201
    assert (await posts.get_post(db, tid))["status"] == "published"


@pytest.mark.parametrize("killed", ["before the webhook answered", "after the receiver kept the post"])
async def test_sigkill_between_two_destinations_publishes_each_exactly_once(db, llm, two_destinations, pg_url, killed):
    """Crash drill: `newsroom approve` is SIGKILLed while the webhook request is in flight (the static
    site is published and in the ledger by then). Recovery publishes what is missing and never
    repeats a done destination; a webhook the receiver had already kept is sent again with the same
    Idempotency-Key, so the receiver keeps it once."""
    import asyncio
    import os
    import signal
    import subprocess
    import sys

    from service.recovery import recover

    receiver = two_destinations
    receiver.hang_s, receiver.hang_when = 300.0, ("before" if killed.startswith("before") else "after")
    snap = await start_post(f"Crash between destinations ({killed})")
    tid = snap.thread_id
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "approve", tid, "--reviewer", "drill"], cwd=root,
                            env=dict(os.environ, DATABASE_URL=pg_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        for _ in range(600):
            if receiver.in_flight:
                break
            await asyncio.sleep(0.05)
        assert receiver.in_flight, "the webhook request never arrived"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    rows = await posts.publications_for(db, tid)
    assert [r["destination"] for r in rows] == ["static_site"]  # the first destination done, the second not
    assert (await posts.get_post(db, tid))["status"] == "publishing"
    site_page = Path(rows[0]["location"])
    written = site_page.stat().st_mtime_ns
    receiver.hang_s = 0.0

    report = await recover(thread_ids=[tid])
    assert report.resumed == [tid] and report.errors == {}
    rows = await posts.publications_for(db, tid)
    assert sorted(r["destination"] for r in rows) == ["static_site", "webhook"]
    assert site_page.stat().st_mtime_ns == written  # the site was not published again
    hook_key = next(r["publish_key"] for r in rows if r["destination"] == "webhook")
    assert list(receiver.accepted) == [hook_key]  # the receiver kept the post once
    sent = [d for d in receiver.deliveries if d.idempotency_key == hook_key]
    assert [d.status for d in sent] == ([201] if killed.startswith("before") else [201, 200])
    assert (await posts.get_post(db, tid))["status"] == "published"
    assert (await recover(thread_ids=[tid])).acted == 0


def test_missing_destinations_only_once_the_post_reached_the_publisher():
    from tools.publish import missing_destinations

    both = ["static_site", "webhook"]
    site_row = [{"destination": "static_site"}]
    assert missing_destinations({"status": "awaiting_approval"}, [], both) == []  # not published at all yet
    assert missing_destinations({"status": "publishing"}, [], both) == both
    assert missing_destinations({"status": "failed", "status_reason": "publisher: webhook ..."}, site_row, both) == ["webhook"]
    assert missing_destinations({"status": "failed", "status_reason": "writer: down"}, [], both) == []
    assert missing_destinations({"status": "published"}, site_row + [{"destination": "webhook"}], both) == []
