"""The telegram_channel destination against our fake Bot API (real HTTP), in-process: the post's
title, summary and link sent to the channel once, with its own ledger row beside the static site's."""
from __future__ import annotations

import pytest

from config import reset_settings_cache
from service.runner import resume, start_post
from storage import posts
from tests.engine_fixtures import llm, scripted_llm  # noqa: F401
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
