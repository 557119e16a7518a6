"""The git destination, in-process, against a real local bare repository: the post committed as
Markdown with front matter in a content folder and pushed; one ledger row per destination; a replay
(the push done, the ledger row lost) makes no second commit."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from config import reset_settings_cache
from service.runner import resume, start_post
from storage import posts
from tools.publish import GitDestination, PublishFailed, Rendered


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def bare(tmp_path) -> Path:
    path = tmp_path / "site.git"
    _git("init", "--bare", "-q", str(path))
    return path


@pytest.fixture
def git_destination(bare, tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSROOM_PUBLISH_DESTINATIONS", "static_site,git")
    monkeypatch.setenv("NEWSROOM_GIT_REMOTE", str(bare))
    monkeypatch.setenv("NEWSROOM_GIT_BRANCH", "main")
    reset_settings_cache()
    yield bare
    monkeypatch.undo()
    reset_settings_cache()


def _log(bare: Path) -> list[str]:
    return _git("--git-dir", str(bare), "log", "--format=%s|%an", "main").splitlines()


async def test_a_post_is_committed_and_pushed_once(db, llm, git_destination, tmp_path):
    bare = git_destination
    snap = await start_post("Published to a git repository")
    done = await resume(snap.thread_id, {"action": "approve", "reviewer": "gus"})
    assert done.values["outcome"] == "published"
    rows = {r["destination"]: r for r in await posts.publications_for(db, snap.thread_id)}
    assert set(rows) == {"static_site", "git"}
    assert rows["git"]["publish_key"] == f"{rows['static_site']['publish_key']}:git"
    assert _log(bare) == [f"Publish: {done.values['publication']['title']}|newsroom"]
    files = _git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main").split()
    assert len(files) == 1 and files[0].startswith("content/posts/") and files[0].endswith(".md")
    committed = _git("--git-dir", str(bare), "show", f"main:{files[0]}")
    assert committed.startswith("---\ntitle:") and committed == Path(rows["static_site"]["location"]).with_suffix(".md").read_text()
    body = _git("--git-dir", str(bare), "log", "-1", "--format=%B", "main")
    assert f"Publish-Key: {done.values['publication']['publish_key']}" in body
    assert rows["git"]["location"].startswith(f"{bare}#main:content/posts/")


def test_a_replay_makes_no_second_commit_and_another_post_adds_one(bare, tmp_path):
    dest = GitDestination(str(bare), tmp_path / "clone", branch="main")
    item = Rendered(publish_key="k" * 40, slug="gqa-kkkk", title="GQA", markdown="---\ntitle: \"GQA\"\n---\n\nbody\n",
                    html="<h1>GQA</h1>")
    first = dest.publish(item)
    assert dest.publish(item) == first  # pushed already: nothing new to commit
    other = GitDestination(str(bare), tmp_path / "another-clone", branch="main")  # another process's clone
    assert other.publish(item) == first
    other.publish(Rendered(publish_key="m" * 40, slug="rope-mmmm", title="RoPE", markdown="---\ntitle: \"RoPE\"\n---\n",
                           html=""))
    dest.publish(item)  # the first clone catches up with the remote before it checks
    assert _log(bare) == ["Publish: RoPE|newsroom", "Publish: GQA|newsroom"]


def test_an_unreachable_remote_fails_with_the_reason(tmp_path):
    dest = GitDestination(str(tmp_path / "no-such-repo.git"), tmp_path / "clone")
    with pytest.raises(PublishFailed, match="no-such-repo.git"):
        dest.publish(Rendered(publish_key="k", slug="s", title="T", markdown="m", html=""))
