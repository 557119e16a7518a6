"""The static site destination: pages, the manifest-backed index, idempotent republish, old sites."""
from __future__ import annotations

import json
import threading

from tools.publish import Rendered, StaticSiteDestination


def _item(n: int, title: str | None = None) -> Rendered:
    title = title or f"Post number {n} <&>"
    return Rendered(publish_key=f"k{n}", slug=f"post-{n}", title=title,
                    markdown=f'---\ntitle: "{title}"\n---\nbody {n}\n', html=f"<p>{n}</p>")


def _index_links(site) -> list[str]:
    page = (site / "index.html").read_text()
    return [chunk.split('"')[0] for chunk in page.split('<a href="posts/')[1:]]


def test_index_lists_every_post_newest_first_and_escapes_titles(tmp_path):
    dest = StaticSiteDestination(tmp_path)
    for n in range(3):
        location = dest.publish(_item(n))
        assert location.endswith(f"post-{n}.html")
    assert _index_links(tmp_path) == ["post-2.html", "post-1.html", "post-0.html"]
    page = (tmp_path / "index.html").read_text()
    assert "Post number 1 &lt;&amp;&gt;" in page and "<&>" not in page


def test_republishing_the_same_post_keeps_one_entry_and_its_place(tmp_path):
    dest = StaticSiteDestination(tmp_path)
    dest.publish(_item(0))
    dest.publish(_item(1))
    dest.publish(_item(0, title="Post zero, retitled"))  # a replay after a crash overwrites in place
    manifest = json.loads((tmp_path / "posts" / "manifest.json").read_text())
    assert sorted(manifest) == ["post-0", "post-1"]
    assert manifest["post-0"]["title"] == "Post zero, retitled"
    assert _index_links(tmp_path) == ["post-1.html", "post-0.html"]


def test_a_site_from_before_the_manifest_keeps_its_posts(tmp_path):
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "old.md").write_text('---\ntitle: "An \\"old\\" post"\n---\n')
    (posts / "old.html").write_text("<p>old</p>")
    StaticSiteDestination(tmp_path).publish(_item(7))
    manifest = json.loads((posts / "manifest.json").read_text())
    assert manifest["old"]["title"] == 'An "old" post'
    assert _index_links(tmp_path) == ["post-7.html", "old.html"]


def test_a_corrupt_manifest_is_rebuilt_from_the_pages(tmp_path):
    dest = StaticSiteDestination(tmp_path)
    dest.publish(_item(0))
    (tmp_path / "posts" / "manifest.json").write_text("{not json")
    dest.publish(_item(1))
    assert sorted(_index_links(tmp_path)) == ["post-0.html", "post-1.html"]


def test_concurrent_publishers_lose_no_entry(tmp_path):
    # Two destinations = two processes' views of one folder; the file lock serialises the manifest.
    dests = [StaticSiteDestination(tmp_path), StaticSiteDestination(tmp_path)]
    threads = [threading.Thread(target=lambda i=i: [dests[i % 2].publish(_item(i * 100 + j)) for j in range(10)])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_index_links(tmp_path)) == 40
    assert len(json.loads((tmp_path / "posts" / "manifest.json").read_text())) == 40


def test_published_files_are_readable_like_any_new_file(tmp_path):
    # mkstemp makes 0600 files: a web server running as another user could not serve the site.
    import os

    from tools import publish

    mask = os.umask(0o022)
    os.umask(mask)
    assert publish._FILE_MODE == 0o666 & ~mask
    StaticSiteDestination(tmp_path).publish(_item(0))
    for path in (tmp_path / "index.html", tmp_path / "posts" / "post-0.html", tmp_path / "posts" / "post-0.md",
                 tmp_path / "posts" / "manifest.json"):
        assert os.stat(path).st_mode & 0o777 == publish._FILE_MODE, path


def test_the_atom_feed_lists_posts_newest_first_escaped_with_absolute_links_when_configured(tmp_path):
    import xml.etree.ElementTree as ET

    dest = StaticSiteDestination(tmp_path, link_base="https://blog.example/posts/")
    for n in range(3):
        dest.publish(_item(n))
    dest.publish(_item(1))  # republished: one entry, its place kept
    ns = {"a": "http://www.w3.org/2005/Atom"}
    feed = ET.fromstring((tmp_path / "feed.xml").read_bytes())  # well-formed XML, titles escaped
    entries = feed.findall("a:entry", ns)
    assert [e.find("a:title", ns).text for e in entries] == [f"Post number {n} <&>" for n in (2, 1, 0)]
    assert [e.find("a:link", ns).get("href") for e in entries] == [
        f"https://blog.example/posts/post-{n}.html" for n in (2, 1, 0)]
    assert entries[0].find("a:summary", ns).text == "body 2"
    assert len({e.find("a:id", ns).text for e in entries}) == 3
    assert 'href="feed.xml"' in (tmp_path / "index.html").read_text()
    relative = StaticSiteDestination(tmp_path / "other")
    relative.publish(_item(7))
    assert ET.fromstring((tmp_path / "other" / "feed.xml").read_bytes()).find("a:entry/a:link", ns).get("href") \
        == "posts/post-7.html"
