"""Publish destinations and the exactly-once publish step.

Exactly once: the publish key (thread id + draft hash) goes into the publications ledger in the
same transaction that marks the post published. A replay finds the key and publishes nothing.
Destinations must be idempotent per key (the static site overwrites the same files), because a
crash between the write and the ledger commit makes the replay write again.
"""
from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from storage import posts
from storage.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    publish_key: str
    slug: str
    title: str
    markdown: str  # with front matter
    html: str


class Destination(Protocol):
    name: str

    def publish(self, item: Rendered) -> str:
        """Write the item; return where it went. Must be idempotent per publish key."""


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


class StaticSiteDestination:
    """Markdown with front matter + an HTML page per post, and an index page, in a folder."""

    name = "static_site"

    def __init__(self, site_dir: Path):
        self.site_dir = Path(site_dir)

    def publish(self, item: Rendered) -> str:
        md_path = self.site_dir / "posts" / f"{item.slug}.md"
        html_path = self.site_dir / "posts" / f"{item.slug}.html"
        _atomic_write(md_path, item.markdown)
        _atomic_write(html_path, item.html)
        self._rebuild_index()
        return str(html_path.resolve())

    def _rebuild_index(self) -> None:
        entries = []
        for p in sorted((self.site_dir / "posts").glob("*.html"), key=lambda p: p.stat().st_mtime, reverse=True):
            title = p.stem
            md = p.with_suffix(".md")
            if md.exists():
                m = re.search(r'^title: "(.*)"$', md.read_text(encoding="utf-8"), re.MULTILINE)
                if m:
                    title = json.loads(f'"{m.group(1)}"')
            entries.append(f'<li><a href="posts/{html.escape(p.name)}">{html.escape(title)}</a></li>')
        page = ("<!doctype html><meta charset=utf-8><title>newsroom</title><h1>Posts</h1><ul>"
                + "".join(entries) + "</ul>\n")
        _atomic_write(self.site_dir / "index.html", page)


def destination_from_settings(settings) -> Destination:
    return StaticSiteDestination(settings.site_dir)


async def publish_once(db: Database, destination: Destination, *, thread_id: str, item: Rendered,
                       draft_hash: str) -> tuple[dict, bool]:
    """Publish unless the ledger already has this key. Returns (ledger row, published_now)."""
    existing = await posts.get_publication(db, item.publish_key)
    if existing is not None:
        log.info("publish key %s already in the ledger: not publishing again", item.publish_key)
        return existing, False
    location = await asyncio.to_thread(destination.publish, item)  # file I/O off the event loop
    recorded = await posts.record_publication(
        db, publish_key=item.publish_key, thread_id=thread_id, destination=destination.name,
        location=location, draft_hash=draft_hash, title=item.title,
    )
    row = await posts.get_publication(db, item.publish_key)
    return row, recorded
