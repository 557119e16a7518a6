"""The telegram_channel destination against our fake Bot API (real HTTP), in-process: the post's
title, summary and link sent to the channel once, with its own ledger row beside the static site's."""
from __future__ import annotations

import pytest

from config import reset_settings_cache
from service.runner import resume, start_post
from storage import posts
from tests.fake_telegram import TOKEN
from tools.publish import PublishFailed, Rendered, TelegramChannelDestination, summary_of

CHANNEL = -1001234567


@pytest.fixture
def channel(fake_telegram, monkeypatch):
    monkeypatch.setenv("NEWSROOM_PUBLISH_DESTINATIONS", "static_site,telegram_channel")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("NEWSROOM_TELEGRAM_API_BASE_URL", fake_telegram.url)
    monkeypatch.setenv("NEWSROOM_PUBLISH_TELEGRAM_CHAT", str(CHANNEL))
    monkeypatch.setenv("NEWSROOM_PUBLISH_LINK_BASE", "https://blog.example/posts/")
    reset_settings_cache()
    yield fake_telegram
    monkeypatch.undo()
    reset_settings_cache()


def test_the_summary_is_the_first_paragraph_after_the_front_matter():
    md = '---\ntitle: "T"\n---\n\n# T\n\nFirst paragraph, <b>not markup</b>.\n\nSecond.'
    assert summary_of(md) == "First paragraph, <b>not markup</b>."
    assert summary_of("---\nt: 1\n---\n\n" + "word " * 400, limit=50).endswith(" …")


async def test_a_published_post_is_announced_in_the_channel_once(db, llm, channel):
    fake = channel
    before = len(fake.chat_messages(CHANNEL))
    snap = await start_post("Announced in a Telegram channel")
    done = await resume(snap.thread_id, {"action": "approve", "reviewer": "cy"})
    assert done.values["outcome"] == "published"
    rows = {r["destination"]: r for r in await posts.publications_for(db, snap.thread_id)}
    assert set(rows) == {"static_site", "telegram_channel"}
    sent = fake.chat_messages(CHANNEL)[before:]
    assert len(sent) == 1
    text = sent[0]["text"]
    slug = rows["static_site"]["location"].rsplit("/", 1)[-1]
    assert text.startswith(done.values["publication"]["title"] + "\n\n")
    assert text.endswith(f"https://blog.example/posts/{slug}") and "_parse_mode" not in sent[0]
    assert rows["telegram_channel"]["location"] == f"telegram:{CHANNEL}/{sent[0]['message_id']}"


def test_a_refused_message_fails_with_the_reason_and_no_token(fake_telegram):
    dest = TelegramChannelDestination("424242:wrong-token", str(CHANNEL), api_base_url=fake_telegram.url,
                                      max_attempts=2, backoff_s=0.01)
    with pytest.raises(PublishFailed) as err:
        dest.publish(Rendered(publish_key="k", slug="s", title="T", markdown="m", html=""))
    assert "HTTP 401" in str(err.value) and "wrong-token" not in str(err.value)


async def test_a_crash_after_telegram_took_the_message_is_not_resent_blindly(db, llm, channel, monkeypatch):
    """The process dies after the Bot API accepted the message and before its ledger row: the replay
    finds the send intent without the row and does not send again; the post fails saying so; the
    human's word (`newsroom retry --sent telegram_channel`) records it and the post is published with
    the one message in the channel."""
    from service.recovery import recover
    from service.runner import retry
    from tools import publish
    from tools.publish import settle_uncertain_send

    fake = channel
    before = len(fake.chat_messages(CHANNEL))
    snap = await start_post("Crash after the channel took it")
    real = posts.insert_publication  # the ledger write publish_everywhere makes

    async def dies_after_the_send(db_, **kw):
        if kw["destination"] == "telegram_channel":
            raise RuntimeError("killed between the send and its ledger row")
        return await real(db_, **kw)

    monkeypatch.setattr(publish.posts, "insert_publication", dies_after_the_send)
    with pytest.raises(RuntimeError, match="killed between"):
        await resume(snap.thread_id, {"action": "approve", "reviewer": "cy"})
    monkeypatch.setattr(publish.posts, "insert_publication", real)
    assert len(fake.chat_messages(CHANNEL)) == before + 1  # Telegram has it
    await recover(thread_ids=[snap.thread_id])  # the replay
    post = await posts.get_post(db, snap.thread_id)
    assert post["status"] == "failed" and "outcome is unknown" in post["status_reason"]
    assert len(fake.chat_messages(CHANNEL)) == before + 1  # not sent again
    assert {r["destination"] for r in await posts.publications_for(db, snap.thread_id)} == {"static_site"}
    assert await settle_uncertain_send(db, snap.thread_id, "telegram_channel", sent=True, actor="cy") == 1
    done = await retry(snap.thread_id, actor="cy")
    assert done.values["outcome"] == "published"
    assert (await posts.get_post(db, snap.thread_id))["status"] == "published"
    assert len(fake.chat_messages(CHANNEL)) == before + 1
    rows = {r["destination"]: r for r in await posts.publications_for(db, snap.thread_id)}
    assert rows["telegram_channel"]["location"] == "telegram_channel: confirmed by cy"


async def test_a_definite_refusal_forgets_the_intent_so_a_retry_sends(db, llm, channel, monkeypatch):
    from service.runner import retry
    from tools.publish import TelegramChannelDestination as Dest

    fake = channel
    before = len(fake.chat_messages(CHANNEL))
    snap = await start_post("Refused once by the channel")
    real = Dest.publish

    def refused(self, item):
        raise PublishFailed("telegram channel: HTTP 400 chat not found")

    monkeypatch.setattr(Dest, "publish", refused)
    done = await resume(snap.thread_id, {"action": "approve", "reviewer": "cy"})
    assert done.values["outcome"] == "failed"
    monkeypatch.setattr(Dest, "publish", real)
    done = await retry(snap.thread_id, actor="cy")
    assert done.values["outcome"] == "published" and len(fake.chat_messages(CHANNEL)) == before + 1


async def test_a_reply_lost_after_telegram_took_the_message_is_not_retried_nor_replayed(db, llm, channel, monkeypatch):
    """Telegram takes the message and its answer never arrives in time (a read timeout): the send
    is not retried, the intent stays, the post fails saying the outcome is unknown, and a replay does
    not send again; `--resend` (the human saw it missing) sends it once more."""
    from graphs import desks
    from service.recovery import recover
    from service.runner import retry
    from tools.publish import settle_uncertain_send

    fake = channel
    dest = TelegramChannelDestination(TOKEN, str(CHANNEL), api_base_url=fake.url, max_attempts=4, backoff_s=0.01,
                                      timeout_s=0.3)
    configured = desks.destinations_from_settings
    # The configured pair, the channel with a short read timeout (the setting's 15 s would make a slow test).
    monkeypatch.setattr(desks, "destinations_from_settings",
                        lambda settings: [d if d.name != "telegram_channel" else dest for d in configured(settings)])
    before = len(fake.chat_messages(CHANNEL))
    fake.stall_send_s = 1.0
    try:
        with pytest.raises(PublishFailed) as err:
            dest.publish(Rendered(publish_key="k-stall", slug="s", title="T", markdown="m", html=""))
        assert err.value.maybe_sent and "may have arrived" in str(err.value)
        assert len(fake.chat_messages(CHANNEL)) == before + 1  # taken once, not retried

        snap = await start_post("The channel's answer was lost")
        done = await resume(snap.thread_id, {"action": "approve", "reviewer": "cy"})
        assert done.values["outcome"] == "failed" and "may have arrived" in done.values["error"]
    finally:
        fake.stall_send_s = 0.0
    assert len(fake.chat_messages(CHANNEL)) == before + 2
    await recover(thread_ids=[snap.thread_id])
    again = await retry(snap.thread_id, actor="cy")
    assert again.values["outcome"] == "failed" and "outcome is unknown" in again.values["error"]
    assert len(fake.chat_messages(CHANNEL)) == before + 2  # neither the replay nor the retry resent it
    assert await settle_uncertain_send(db, snap.thread_id, "telegram_channel", sent=False, actor="cy") == 1
    final = await retry(snap.thread_id, actor="cy")
    assert final.values["outcome"] == "published" and len(fake.chat_messages(CHANNEL)) == before + 3
