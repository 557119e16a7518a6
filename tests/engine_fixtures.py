"""Fixtures for engine tests: the scripted LLM server wired in as the writer and judge endpoint."""
from __future__ import annotations

import os

import pytest

from tests.scripted_llm import ScriptedLLM

WRITER, JUDGE = "newsroom-writer", "newsroom-judge"
REASONS = {"technical_accuracy": "ok", "calibration": "ok", "mechanistic_depth": "ok", "audience_calibration": "ok"}


def verdict(ta=4, cal=4, depth=4, aud=4, flag="none") -> dict:
    return {"technical_accuracy": ta, "calibration": cal, "mechanistic_depth": depth,
            "audience_calibration": aud, "flag": flag, "reasoning": dict(REASONS)}


PASSING = verdict()
FAILING = verdict(ta=2, cal=2, depth=3, aud=3)


OUTLINE = {"title": "GQA and the KV cache", "sections": ["What GQA shares", "What it saves"]}


def draft_reply(req):
    """The scripted writer: an outline when JSON is asked for, else a draft; it cites [1] only
    when the notes have a numbered source (a real writer is told to cite only those)."""
    if req.wants_json:
        return OUTLINE
    n = sum(1 for m in req.messages if m.get("role") == "user")
    cite = " [1]" if "[1] <source" in req.prompt else ""
    return f"# GQA and the KV cache\n\nGrouped-query attention shares key/value heads across query heads{cite}. ({n})"


def writer_reply(req, **reply_kw):
    """draft_reply as a scripted Reply (JSON for the outline, text for a draft), with Reply options."""
    from tests.scripted_llm import Reply

    out = draft_reply(req)
    return Reply.json(out, **reply_kw) if isinstance(out, dict) else Reply(text=out, **reply_kw)


def reset_runtime() -> None:
    from config import reset_settings_cache
    from tools.llm import reset_gateway

    reset_settings_cache()
    reset_gateway()


@pytest.fixture(scope="session")
def scripted_llm(pg_url):
    with ScriptedLLM(models=[WRITER, JUDGE]) as llm:
        os.environ["NEWSROOM_LLM_BASE_URL"] = llm.base_url
        os.environ["NEWSROOM_LLM_PROVIDER"] = "llamacpp"
        reset_runtime()
        yield llm


@pytest.fixture
def llm(scripted_llm):
    """The scripted server, reset, with the writer answering drafts and the judge passing."""
    scripted_llm.reset()
    scripted_llm.on_chat(draft_reply, model=WRITER)
    scripted_llm.on_chat(lambda req: PASSING, model=JUDGE)
    reset_runtime()
    yield scripted_llm
    scripted_llm.reset()
