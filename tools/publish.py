"""Publish destinations and the exactly-once publish step.

Exactly once per destination: each destination's key (the post's publish key, thread id + draft
hash, and the destination) goes into the publications ledger right after that destination took the
post, and the last missing one in the same transaction that marks the post published. A replay
finds the keys and publishes only what is missing. Destinations must be idempotent per key (the
static site overwrites the same files, git makes no second commit, the webhook sends the key as
Idempotency-Key), because a crash between the write and the ledger commit makes the replay write again.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
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

from storage import posts, schedules
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

    def __init__(self, site_dir: Path, link_base: str | None = None):
        self.site_dir = Path(site_dir)
        self.link_base = link_base  # the public URL of posts/ (NEWSROOM_PUBLISH_LINK_BASE): absolute feed links

    def publish(self, item: Rendered) -> str:
        posts_dir = self.site_dir / "posts"
        html_path = posts_dir / f"{item.slug}.html"
        _atomic_write(posts_dir / f"{item.slug}.md", item.markdown)
        _atomic_write(html_path, item.html)
        with self._locked():
            manifest = self._load_manifest()
            entry = manifest.setdefault(item.slug, {"published_at": time.time()})
            entry["title"] = item.title
            entry["summary"] = summary_of(item.markdown, limit=400)
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
        page = ("<!doctype html><meta charset=utf-8><title>newsroom</title>"
                '<link rel=alternate type="application/atom+xml" href="feed.xml"><h1>Posts</h1><ul>'
                + "".join(entries) + "</ul>\n")
        _atomic_write(self.site_dir / "index.html", page)
        _atomic_write(self.site_dir / "feed.xml", atom_feed(newest_first[:FEED_ENTRIES], self.link_base))


FEED_ENTRIES = 50


def atom_feed(entries: list[tuple[str, dict]], link_base: str | None = None) -> str:
    """An Atom feed (RFC 4287) of (slug, manifest entry) newest first: title, link, id, updated,
    summary, every text XML-escaped. Links are relative to the site (posts/<slug>.html) unless the
    site's public URL is configured."""
    from xml.sax.saxutils import escape, quoteattr

    def stamp(ts: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

    base = (link_base.rstrip("/") + "/") if link_base else "posts/"
    updated = stamp(entries[0][1].get("published_at", 0)) if entries else stamp(0)
    items = []
    for slug, e in entries:
        items.append(
            "<entry>"
            f"<title>{escape(e.get('title') or slug)}</title>"
            f"<link rel=\"alternate\" href={quoteattr(base + slug + '.html')}/>"
            f"<id>urn:newsroom:post:{escape(slug)}</id>"
            f"<updated>{stamp(e.get('published_at', 0))}</updated>"
            + (f"<summary>{escape(e['summary'])}</summary>" if e.get("summary") else "")
            + "</entry>")
    return ('<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
            "<title>newsroom</title><id>urn:newsroom:feed</id>"
            f"<updated>{updated}</updated><author><name>newsroom</name></author>"
            + "".join(items) + "</feed>\n")


class PublishFailed(RuntimeError):
    """A destination refused or never took the post (after its retries): the reason, no secret in it.
    maybe_sent: the destination may have taken it all the same (a request cut off after it was sent);
    a destination without idempotency keys is then not sent to again without a human's word."""

    def __init__(self, message: str, *, maybe_sent: bool = False):
        super().__init__(message)
        self.maybe_sent = maybe_sent


SIGNATURE_HEADER = "X-Newsroom-Signature"
TIMESTAMP_HEADER = "X-Newsroom-Timestamp"


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """'sha256=<hex>' of HMAC-SHA256(secret, "<timestamp>.<body>"): the receiver recomputes it (and
    refuses an old timestamp, so a captured request cannot be replayed later)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class _Retryable(Exception):
    pass


class WebhookDestination:
    """POST the post as JSON to a configured URL, signed (HMAC-SHA256 over timestamp + body) with an
    Idempotency-Key (the post's key for this destination), so a receiver that sees a retry or a replay
    after a crash can drop the duplicate. A 2xx is success; a network error, 408, 429 or 5xx is retried
    with exponential backoff (tenacity); any other status fails at once."""

    name = "webhook"

    def __init__(self, url: str, secret: str, *, max_attempts: int = 5, backoff_s: float = 1.0,
                 timeout_s: float = 10.0):
        self.url, self._secret = url, secret
        self.max_attempts, self.backoff_s, self.timeout_s = max_attempts, backoff_s, timeout_s

    def body(self, item: Rendered) -> bytes:
        return json.dumps({"publish_key": item.publish_key, "title": item.title, "slug": item.slug,
                           "markdown": item.markdown, "html": item.html}, ensure_ascii=False,
                          sort_keys=True).encode()

    def publish(self, item: Rendered, *, idempotency_key: str | None = None) -> str:
        import httpx
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        body = self.body(item)
        key = idempotency_key or item.publish_key
        last: list[str] = []
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as http:
            def attempt() -> str:
                ts = str(int(time.time()))
                headers = {"Content-Type": "application/json", "Idempotency-Key": key, TIMESTAMP_HEADER: ts,
                           SIGNATURE_HEADER: webhook_signature(self._secret, ts, body)}
                try:
                    resp = http.post(self.url, content=body, headers=headers)
                except httpx.TransportError as err:
                    last.append(f"{type(err).__name__}: {err}")
                    raise _Retryable from err
                if 200 <= resp.status_code < 300:
                    return resp.headers.get("location") or f"{self.url} (HTTP {resp.status_code})"
                last.append(f"HTTP {resp.status_code}")
                if resp.status_code in (408, 429) or resp.status_code >= 500:
                    raise _Retryable
                raise PublishFailed(f"webhook {self.url} answered HTTP {resp.status_code}: {resp.text[:200]}")

            try:
                for tried in Retrying(stop=stop_after_attempt(self.max_attempts), reraise=True,
                                      retry=retry_if_exception_type(_Retryable),
                                      wait=wait_exponential(multiplier=self.backoff_s, max=30)):
                    with tried:
                        return attempt()
            except _Retryable:
                raise PublishFailed(f"webhook {self.url}: no 2xx after {self.max_attempts} attempts "
                                    f"({'; '.join(last[-3:])})") from None
        raise PublishFailed("webhook: not attempted")  # unreachable: Retrying returns or raises


class GitDestination:
    """Each post committed as Markdown with front matter (`<content_dir>/<slug>.md`, a Hugo/Jekyll-style
    content folder) to a clone of a configured remote, then pushed (GitPython over the git binary).
    Idempotent per key: the clone is reset to the remote branch first, and a post whose file already
    holds this text (a replay after a crash between the push and the ledger row) makes no new commit.
    One publisher at a time per clone (a file lock): several processes may share a data dir."""

    name = "git"

    def __init__(self, remote: str, work_dir: Path, *, branch: str = "main", content_dir: str = "content/posts",
                 author: str = "newsroom <newsroom@localhost>"):
        self.remote, self.work_dir, self.branch, self.content_dir = remote, Path(work_dir), branch, content_dir
        name, _, email = author.partition(" <")
        self.author_name, self.author_email = name.strip(), email.rstrip(">").strip()

    def _synced_repo(self):
        import git

        if (self.work_dir / ".git").exists():
            repo = git.Repo(self.work_dir)
        else:
            self.work_dir.parent.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.clone_from(self.remote, self.work_dir, env={"GIT_TERMINAL_PROMPT": "0"})
        repo.git.update_environment(GIT_TERMINAL_PROMPT="0")
        origin = repo.remote("origin")
        origin.fetch()
        remote_ref = f"origin/{self.branch}"
        if any(ref.name == remote_ref for ref in origin.refs):
            repo.git.checkout("-B", self.branch, remote_ref)
            repo.git.reset("--hard", remote_ref)  # a commit of ours the remote never took is dropped, then redone
        elif repo.head.is_valid():
            repo.git.checkout("-B", self.branch)
        else:
            repo.git.symbolic_ref("HEAD", f"refs/heads/{self.branch}")  # an empty remote: our first commit
        return repo

    def publish(self, item: Rendered) -> str:
        import git

        rel = f"{self.content_dir}/{item.slug}.md"
        lock_path = self.work_dir.parent / f".{self.work_dir.name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(lock_path, "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                repo = self._synced_repo()
                _atomic_write(self.work_dir / rel, item.markdown)
                repo.index.add([rel])
                if repo.head.is_valid() and not repo.index.diff("HEAD"):
                    sha = repo.head.commit.hexsha  # already committed and pushed (a replay)
                else:
                    who = git.Actor(self.author_name, self.author_email)
                    sha = repo.index.commit(f"Publish: {item.title[:100]}\n\nPublish-Key: {item.publish_key}\n",
                                            author=who, committer=who).hexsha
                repo.remote("origin").push(f"refs/heads/{self.branch}:refs/heads/{self.branch}").raise_if_error()
        except git.GitError as err:
            raise PublishFailed(f"git {self.remote} ({self.branch}): {type(err).__name__}: "
                                f"{str(err).strip()[:300]}") from None
        return f"{self.remote}#{self.branch}:{rel}@{sha[:12]}"


TELEGRAM_TEXT_LIMIT = 4096


def summary_of(markdown: str, limit: int = 700) -> str:
    """The first paragraph of a rendered post's body (after its front matter and title), cut at a word."""
    text = markdown
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        text = text[end + 5:] if end >= 0 else text
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip() and not p.strip().startswith("#")]
    first = paragraphs[0] if paragraphs else ""
    return first if len(first) <= limit else first[:limit].rsplit(" ", 1)[0] + " …"


class TelegramChannelDestination:
    """The post's title, summary and link sent to a Telegram channel by the bot (Bot API sendMessage,
    plain text: nothing in the post is parsed as markup). Retried with backoff on a network error, 429
    (its retry_after) or 5xx. The Bot API has no idempotency key: a crash after Telegram took the
    message and before its ledger row is written cannot be told from one where it never arrived:
    publish_everywhere records a send intent before the send and, on a replay that finds the intent
    without its ledger row, does not send again; it fails the post saying so, and the human checks
    the channel (`newsroom retry THREAD --resend telegram_channel` or `--sent telegram_channel`).
    For the same reason a request cut off after it went out (a read timeout) is not retried."""

    name = "telegram_channel"
    idempotent = False  # no idempotency key in the Bot API: publish_everywhere guards it with an intent

    def __init__(self, token: str, chat: str, *, api_base_url: str = "https://api.telegram.org",
                 link_base: str | None = None, max_attempts: int = 4, backoff_s: float = 1.0, timeout_s: float = 15.0):
        self._token, self.chat, self.api_base_url = token, chat, api_base_url.rstrip("/")
        self.link_base, self.max_attempts, self.backoff_s, self.timeout_s = link_base, max_attempts, backoff_s, timeout_s

    def text(self, item: Rendered) -> str:
        link = f"\n\n{self.link_base.rstrip('/')}/{item.slug}.html" if self.link_base else ""
        return (f"{item.title}\n\n{summary_of(item.markdown)}"[:TELEGRAM_TEXT_LIMIT - len(link)] + link).strip()

    def publish(self, item: Rendered) -> str:
        import httpx
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        url = f"{self.api_base_url}/bot{self._token}/sendMessage"
        data = {"chat_id": self.chat, "text": self.text(item), "link_preview_options": json.dumps({"is_disabled": False})}
        last: list[str] = []
        with httpx.Client(timeout=self.timeout_s) as http:
            def attempt() -> str:
                try:
                    resp = http.post(url, data=data)
                except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                    last.append(type(err).__name__)  # never the URL: it holds the bot token
                    raise _Retryable from None  # never reached Telegram: safe to send again
                except httpx.TransportError as err:
                    # Sent, then cut off: Telegram may have taken it. Not resent blindly.
                    raise PublishFailed(f"telegram channel {self.chat}: the request was cut off after it was sent "
                                        f"({type(err).__name__}); the message may have arrived", maybe_sent=True) from None
                answer = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
                if resp.status_code == 200 and answer.get("ok"):
                    return f"telegram:{self.chat}/{answer['result']['message_id']}"
                last.append(f"HTTP {resp.status_code} {str(answer.get('description') or '')[:120]}")
                if resp.status_code == 429 or resp.status_code >= 500:
                    wait = (answer.get("parameters") or {}).get("retry_after")
                    if wait:
                        time.sleep(min(float(wait), 30.0))
                    raise _Retryable
                raise PublishFailed(f"telegram channel {self.chat}: {last[-1]}")

            try:
                for tried in Retrying(stop=stop_after_attempt(self.max_attempts), reraise=True,
                                      retry=retry_if_exception_type(_Retryable),
                                      wait=wait_exponential(multiplier=self.backoff_s, max=30)):
                    with tried:
                        return attempt()
            except _Retryable:
                raise PublishFailed(f"telegram channel {self.chat}: not sent after {self.max_attempts} attempts "
                                    f"({'; '.join(last[-3:])})") from None
        raise PublishFailed("telegram channel: not attempted")


async def settle_uncertain_send(db: Database, thread_id: str, destination: str, *, sent: bool, actor: str) -> int:
    """A human's word on sends whose outcome was unknown (an intent without its ledger row):
    sent=True records them as published (the message did arrive), sent=False forgets the intent so
    the next retry sends again. Returns how many were settled."""
    settled = 0
    for intent in await schedules.open_intents(db, thread_id, destination):
        if sent:
            await posts.record_publication(db, publish_key=intent["publish_key"], thread_id=thread_id,
                                           destination=destination, location=f"{destination}: confirmed by {actor}",
                                           draft_hash=intent["draft_hash"], title=intent["title"], complete=False)
        else:
            await schedules.clear_intent(db, intent["publish_key"])
        settled += 1
    return settled


def destinations_from_settings(settings) -> list[Destination]:
    """NEWSROOM_PUBLISH_DESTINATIONS, in order (each published exactly once per post)."""
    out: list[Destination] = []
    for name in settings.publish_destinations:
        if name == "static_site":
            out.append(StaticSiteDestination(settings.site_dir, link_base=settings.publish_link_base))
        elif name == "webhook":
            out.append(WebhookDestination(settings.webhook_url, settings.webhook_secret.get_secret_value(),
                                          max_attempts=settings.webhook_max_attempts,
                                          backoff_s=settings.webhook_backoff_s, timeout_s=settings.webhook_timeout_s))
        elif name == "telegram_channel":
            out.append(TelegramChannelDestination(settings.telegram_bot_token.get_secret_value(),
                                                  settings.publish_telegram_chat,
                                                  api_base_url=settings.telegram_api_base_url,
                                                  link_base=settings.publish_link_base,
                                                  backoff_s=settings.webhook_backoff_s))
        elif name == "git":
            out.append(GitDestination(settings.git_remote, settings.data_dir / "git-destination",
                                      branch=settings.git_branch, content_dir=settings.git_content_dir,
                                      author=settings.git_author))
    return out


def missing_destinations(post: dict, pubs: list[dict], configured: list[str]) -> list[str]:
    """The configured destinations a post that reached the Publisher has no ledger row for."""
    reached = bool(pubs) or post["status"] == "publishing" or (
        post["status"] == "failed" and str(post.get("status_reason") or "").startswith("publisher"))
    done = {p["destination"] for p in pubs}
    return [name for name in configured if name not in done] if reached else []


def destination_key(publish_key: str, destination: str) -> str:
    """The ledger key of one destination's publication: the post's key for the static site (the one
    key the ledger has always held), "<key>:<destination>" for the others."""
    return publish_key if destination == StaticSiteDestination.name else f"{publish_key}:{destination}"


async def publish_everywhere(db: Database, destinations: list[Destination], *, thread_id: str, item: Rendered,
                             draft_hash: str) -> list[tuple[dict, bool]]:
    """Each destination exactly once: one ledger row per (post, destination), written right after
    that destination took the post; a destination whose row exists is skipped (a replay, or a retry
    after another destination failed). The post is marked published in the same transaction as the
    last missing row. A destination that fails raises PublishFailed; the ones before it stay done."""
    out: list[tuple[dict, bool]] = []
    keys = [destination_key(item.publish_key, d.name) for d in destinations]
    for i, (dest, key) in enumerate(zip(destinations, keys)):
        existing = await posts.get_publication(db, key)
        if existing is not None:
            log.info("publish key %s already in the ledger: not publishing to %s again", key, dest.name)
            out.append((existing, False))
            continue
        guarded = not getattr(dest, "idempotent", True)
        if guarded and not await schedules.record_intent(db, publish_key=key, thread_id=thread_id,
                                                         destination=dest.name, draft_hash=draft_hash, title=item.title):
            intent = await schedules.get_intent(db, key) or {}
            raise PublishFailed(
                f"{dest.name}: a send started at {intent.get('started_at')} and its outcome is unknown (the process may "
                f"have stopped after the destination took it): not sent again. Check it, then `newsroom retry "
                f"{thread_id} --resend {dest.name}` to send it, or `--sent {dest.name}` if it arrived")
        try:
            if isinstance(dest, WebhookDestination):
                location = await asyncio.to_thread(dest.publish, item, idempotency_key=key)
            else:
                location = await asyncio.to_thread(dest.publish, item)  # file I/O off the event loop
        except PublishFailed as err:
            if guarded and not err.maybe_sent:
                await schedules.clear_intent(db, key)  # refused for sure: a retry may send it
            raise
        rest_done = all([await posts.get_publication(db, k) is not None for k in keys[i + 1:]])
        row = await posts.insert_publication(
            db, publish_key=key, thread_id=thread_id, destination=dest.name, location=location,
            draft_hash=draft_hash, title=item.title, complete=rest_done)
        # The row as inserted; a replay that lost the race to record it reads the winner's.
        out.append((row, True) if row is not None else (await posts.get_publication(db, key), False))
    if keys and not any(fresh for _, fresh in out):
        # Every row was there already, one of them recorded by a human's word on a send of unknown
        # outcome (settle_uncertain_send), which cannot know it was the last: complete the post now.
        await posts.transition(db, thread_id, "published", actor="publisher", unless_in=("published",),
                               detail={"publish_key": item.publish_key, "replayed": True})
    return out
