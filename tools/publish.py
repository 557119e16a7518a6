"""Publish destinations and the exactly-once publish step.

Exactly once: the publish key (thread id + draft hash) goes into the publications ledger in the
same transaction that marks the post published. A replay finds the key and publishes nothing.
Destinations must be idempotent per key (the static site overwrites the same files), because a
crash between the write and the ledger commit makes the replay write again.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import html
import json
import logging
import os
import re
import tempfile
import time
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


def _process_umask() -> int:
    mask = os.umask(0o022)  # there is no getter before Python 3.13; read it once, at import
    os.umask(mask)
    return mask


# The mode open() would give a new file. mkstemp creates 0600, which left every published page
# unreadable to the web server serving the site (another user).
_FILE_MODE = 0o666 & ~_process_umask()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, _FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


class StaticSiteDestination:
    """Markdown with front matter + an HTML page per post, and an index page, in a folder.

    The index is rendered from a manifest (posts/manifest.json: slug -> title, first published
    time) updated under a file lock, so a publish costs one small read-modify-write instead of
    re-reading every post ever published (which made each publish O(site size)), and publishers in
    several processes (server, CLI) never drop each other's entries.
    """

    name = "static_site"
    MANIFEST = "manifest.json"

    def __init__(self, site_dir: Path):
        self.site_dir = Path(site_dir)

    def publish(self, item: Rendered) -> str:
        posts_dir = self.site_dir / "posts"
        html_path = posts_dir / f"{item.slug}.html"
        _atomic_write(posts_dir / f"{item.slug}.md", item.markdown)
        _atomic_write(html_path, item.html)
        with self._locked():
            manifest = self._load_manifest()
            entry = manifest.setdefault(item.slug, {"published_at": time.time()})
            entry["title"] = item.title
            _atomic_write(posts_dir / self.MANIFEST, json.dumps(manifest, ensure_ascii=False, sort_keys=True))
            self._write_index(manifest)
        return str(html_path.resolve())

    @contextlib.contextmanager
    def _locked(self):
        (self.site_dir / "posts").mkdir(parents=True, exist_ok=True)
        with open(self.site_dir / "posts" / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
            yield

    def _load_manifest(self) -> dict[str, dict]:
        path = self.site_dir / "posts" / self.MANIFEST
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return self._manifest_from_pages()  # a site published before the manifest existed
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s is unreadable: rebuilding it from the published pages", path)
            return self._manifest_from_pages()

    def _manifest_from_pages(self) -> dict[str, dict]:
        manifest = {}
        for page in (self.site_dir / "posts").glob("*.html"):
            title, md = page.stem, page.with_suffix(".md")
            if md.exists():
                m = re.search(r'^title: "(.*)"$', md.read_text(encoding="utf-8"), re.MULTILINE)
                if m:
                    title = json.loads(f'"{m.group(1)}"')
            manifest[page.stem] = {"title": title, "published_at": page.stat().st_mtime}
        return manifest

    def _write_index(self, manifest: dict[str, dict]) -> None:
        newest_first = sorted(manifest.items(), key=lambda kv: kv[1].get("published_at", 0), reverse=True)
        entries = [f'<li><a href="posts/{html.escape(slug)}.html">{html.escape(e.get("title") or slug)}</a></li>'
                   for slug, e in newest_first]
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
