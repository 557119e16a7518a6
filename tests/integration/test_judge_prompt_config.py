"""The Editor's judge prompt is chosen by configuration only (NEWSROOM_JUDGE_PROMPT), and every verdict
records the prompt version behind it. Real posts: in-process runner, scripted LLM over HTTP, embedded PostgreSQL."""
from __future__ import annotations

from dataclasses import replace

import pytest

from agents import prompts as prompt_registry
from config import ConfigError, get_settings, load_settings, reset_settings_cache
from service.runner import start_post
from storage import posts
from tests.engine_fixtures import JUDGE


async def _verdict_events(db, tid):
    return [e for e in await posts.list_events(db, tid) if e["kind"] == "verdict"]


async def test_the_default_prompt_is_the_configured_one_and_each_verdict_names_it(db, llm):  # noqa: F811
    snap = await start_post("How GQA shrinks the KV cache", requester="alice")
    assert snap.waiting_for_human
    default = get_settings().judge_prompt
    assert default == "editor.judge@2"  # the hardened prompt (data blocks), by the setting's default
    (event,) = await _verdict_events(db, snap.thread_id)
    assert event["detail"]["prompt"] == default
    assert snap.values["reviews"][-1]["judge_prompt"] == default
    system = prompt_registry.load_prompt(default).system.split("{")[0].strip()
    assert llm.requests_for(JUDGE)[-1].messages[0]["content"].startswith(system)


async def test_a_new_version_becomes_the_default_only_when_the_config_names_it(db, llm, monkeypatch):  # noqa: F811
    default = get_settings().judge_prompt
    base = prompt_registry.load_prompt(default)
    # A newer version in the registry (as a new file would be): the highest version is NOT picked up ...
    monkeypatch.setitem(prompt_registry._LOADED, "editor.judge@9",
                        replace(base, version=9, system=base.system + "\nVersion nine."))
    monkeypatch.setitem(prompt_registry._LOADED, "editor.judge", prompt_registry._LOADED["editor.judge@9"])
    snap = await start_post("KV cache arithmetic", requester="alice")
    assert (await _verdict_events(db, snap.thread_id))[0]["detail"]["prompt"] == default
    assert "Version nine." not in llm.requests_for(JUDGE)[-1].messages[0]["content"]
    # ... until the configuration names it.
    monkeypatch.setenv("NEWSROOM_JUDGE_PROMPT", "editor.judge@9")
    reset_settings_cache()
    try:
        snap = await start_post("KV cache arithmetic, again", requester="alice")
    finally:
        monkeypatch.delenv("NEWSROOM_JUDGE_PROMPT")
        reset_settings_cache()
    assert (await _verdict_events(db, snap.thread_id))[0]["detail"]["prompt"] == "editor.judge@9"
    assert "Version nine." in llm.requests_for(JUDGE)[-1].messages[0]["content"]


async def test_a_missing_prompt_version_fails_the_post_with_the_setting_named(db, llm, monkeypatch):  # noqa: F811
    monkeypatch.setenv("NEWSROOM_JUDGE_PROMPT", "editor.judge@77")
    reset_settings_cache()
    try:
        snap = await start_post("A post with a mistyped judge prompt", requester="alice")
    finally:
        monkeypatch.delenv("NEWSROOM_JUDGE_PROMPT")
        reset_settings_cache()
    assert snap.values["outcome"] == "failed"
    assert "NEWSROOM_JUDGE_PROMPT=editor.judge@77" in snap.values["error"]
    assert (await posts.get_post(db, snap.thread_id))["status"] == "failed"
    assert llm.requests_for(JUDGE) == []  # never graded with some other prompt


@pytest.mark.parametrize("value", ["writer.draft@1", "editor.judge", "editor.judge@latest"])
def test_the_setting_must_name_a_judge_prompt_version(value):
    with pytest.raises(ConfigError, match="NEWSROOM_JUDGE_PROMPT"):
        load_settings(judge_prompt=value)
