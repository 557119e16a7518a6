"""The commands on posts: post, approve, revise, edit, reject, retry, cancel, status, list, demo. Each
calls one operation of service/operations.py on the in-process engine (service/runner.py) and
renders the result (service/cli/render.py)."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from config import get_settings
from service.cli.common import run
from service.cli.render import print_next, print_outcome, progress

DEFAULT_DEMO_TOPIC = "How grouped-query attention (GQA) shrinks the KV cache"
# The demo post on the local 1.5B model, sized for <= 3 minutes to the gate on 2 cores (README,
# "Local models"): 4 sources instead of 5 (a shorter prompt for the writer and the judge), a
# ~220-word structured draft (its JSON took 451 tokens for 259 words; a reply cut at the cap keeps its
# complete sentences), room for the judge's verdict.
DEMO_OVERRIDES_QWEN = {"retrieval_top_k": 4, "writer_max_tokens": 480, "judge_max_tokens": 450}


@click.command()
@click.argument("topic", nargs=-1, required=True)
@click.option("--requester", default=lambda: os.environ.get("USER", "cli"), show_default="$USER")
@click.option("--policy", type=click.Choice(["human", "escalations_only"]), default=None)
@click.option("--source", "sources", multiple=True, metavar="URL",
              help="a page to fetch and cite (repeatable; URLs in TOPIC are fetched too)")
@click.option("--budget", "budget", type=click.FloatRange(0, 10000), default=None, metavar="USD",
              help="this run's spend limit (default NEWSROOM_RUN_BUDGET_USD): over it, the draft goes to a human")
def post(topic: tuple[str, ...], requester: str, policy: str | None, sources: tuple[str, ...],
         budget: float | None) -> None:
    """Start a post on TOPIC; runs to the approval gate, printing each desk's progress."""
    from service.runner import InvalidRequest, checked_input, new_thread_id, start_post
    from tools.local_llm import local_llm_if_needed
    from tools.webfetch import FetchRefused, check_url

    text = " ".join(topic).strip()
    try:  # before the database and the local LLM start
        checked_input(text, requester=requester, source="cli", sources=list(sources))
    except InvalidRequest as err:
        raise click.BadParameter(str(err), param_hint="'TOPIC'") from None
    for url in sources:
        try:
            check_url(url)
        except FetchRefused as err:
            raise click.BadParameter(f"{url[:200]}: {err}", param_hint="'--source'") from None
    overrides = {"approval_policy": policy} if policy else {}
    if budget is not None:
        overrides["run_budget_usd"] = budget
    tid = new_thread_id()
    with _resumable_on_interrupt(tid), local_llm_if_needed(get_settings()):
        snap = run(start_post(text, requester=requester, thread_id=tid, progress=progress, overrides=overrides,
                               sources=list(sources)))
    print_outcome(snap)
    print_next(snap)


@contextlib.contextmanager
def _resumable_on_interrupt(thread_id: str):
    """Ctrl-C stops a run at its last checkpoint: say which thread and how it goes on."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: thread {thread_id} stopped at its last checkpoint; "
                   f"`newsroom recover --thread {thread_id}` runs it on (`newsroom serve` does at start)", err=True)
        raise SystemExit(130) from None


_VERSION_OPTION = click.option(
    "--version", "draft_version", type=int, default=None,
    help="the draft version you read: refused if the post now waits at another one")


def _full_thread_id(text: str) -> str:
    """The thread id of a post from what people type: the whole id, or its first or last 6+
    characters (Telegram and `newsroom list` show the last 8)."""
    from storage.approvals import thread_ids_matching
    from storage.connect import get_database

    async def _match():
        return await thread_ids_matching(await get_database(), text)

    found = run(_match())
    if len(found) == 1:
        return found[0]
    if found:
        raise click.ClickException(f"{text!r} matches more than one post ({', '.join(found)}, ...): type more of it")
    if len(text.strip()) >= 32:
        return text.strip()  # a thread with no post row (started in Studio without one): let the graph answer
    raise click.ClickException(f"no post with thread id {text!r} (the whole id, or its first or last 6+ "
                               "characters; `newsroom list` shows recent posts)")


def _resume(thread_id: str, value: dict, draft_version: int | None = None) -> None:
    from service.decisions import AnswerRefused
    from service.runner import NothingToResume, ThreadBusy, resume
    from tools.local_llm import local_llm_if_needed

    thread_id = _full_thread_id(thread_id)
    # revise asks the Writer, an edit the Editor's claim check: both may need the local LLM.
    needs_llm = value["action"] in ("revise", "edit", "approve_with_edits")
    with _resumable_on_interrupt(thread_id), local_llm_if_needed(get_settings()) if needs_llm else _null():
        try:
            snap = run(resume(thread_id, value, progress=progress, expected_version=draft_version))
        except (NothingToResume, ThreadBusy, AnswerRefused) as err:
            raise click.ClickException(str(err)) from None
    print_outcome(snap)
    print_next(snap)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@click.command()
@click.argument("thread_id")
@click.option("--reviewer", default=lambda: os.environ.get("USER", "cli"), show_default="$USER")
@_VERSION_OPTION
@click.option("--at", "at", default=None, metavar="TIME",
              help='approve now, publish at TIME ("2026-12-02 09:00", ISO 8601 with an offset, "tomorrow 09:00", '
                   '"in 2 h"); read in --tz')
@click.option("--tz", default=None, metavar="ZONE", help="IANA zone of --at (default NEWSROOM_TIMEZONE)")
def approve(thread_id: str, reviewer: str, draft_version: int | None, at: str | None, tz: str | None) -> None:
    """Approve the draft waiting in THREAD_ID; the Publisher publishes it once (now, or --at TIME)."""
    if at is not None:
        from service.cli.schedule import approve_at

        return approve_at(_full_thread_id(thread_id), reviewer=reviewer, when=at, tz=tz, draft_version=draft_version)
    _resume(thread_id, {"action": "approve", "reviewer": reviewer}, draft_version)


@click.command()
@click.argument("thread_id")
@click.option("--feedback", required=True, help="what the Writer should change")
@click.option("--section", default=None, metavar="HEADING",
              help="rewrite only this section of the draft (a heading of it); the rest is kept as it is")
@click.option("--reviewer", default=lambda: os.environ.get("USER", "cli"), show_default="$USER")
@_VERSION_OPTION
def revise(thread_id: str, feedback: str, section: str | None, reviewer: str, draft_version: int | None) -> None:
    """Send the draft back to the Writer with FEEDBACK; the new draft goes through the Editor again."""
    value = {"action": "revise", "feedback": feedback, "reviewer": reviewer}
    if section:
        value["section"] = section
    _resume(thread_id, value, draft_version)


@click.command()
@click.argument("thread_id")
@click.option("--file", "path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="the edited Markdown from this file ('-': standard input) instead of opening $EDITOR")
@click.option("--approve", "approve_now", is_flag=True,
              help="approve with the edits: published at once if the citation check passes (else shown again)")
@click.option("--reviewer", default=lambda: os.environ.get("USER", "cli"), show_default="$USER")
@_VERSION_OPTION
def edit(thread_id: str, path: str | None, approve_now: bool, reviewer: str, draft_version: int | None) -> None:
    """Edit the waiting draft of THREAD_ID yourself: $EDITOR opens it as Markdown ('# Title', then the
    body); what you save becomes the next draft version, checked by the Editor's citation check, then
    waiting for approval again (--approve: published in the same step when the check passes)."""
    from service.runner import current

    tid = _full_thread_id(thread_id)
    snap = run(current(tid))
    if not snap.waiting_for_human:
        raise click.ClickException(f"thread {tid} is not waiting for approval: nothing to edit "
                                   f"(newsroom status {tid})")
    shown = snap.interrupt["draft"]
    if draft_version is not None and shown["version"] != draft_version:
        raise click.ClickException(f"thread {tid} waits at draft v{shown['version']}, not v{draft_version}: nothing "
                                   f"changed; read it first (newsroom status {tid})")
    original = f"# {shown['title']}\n\n{shown['body']}\n"
    if path is not None:
        try:
            text = click.open_file(path, encoding="utf-8").read(get_settings().edit_max_chars * 4 + 1)
        except (OSError, UnicodeDecodeError) as err:
            raise click.BadParameter(f"cannot read {path}: {err}", param_hint="'--file'") from None
    else:
        text = click.edit(original, extension=".md", require_save=True)
        if text is None:
            click.echo("not saved: nothing changed")
            return
    if text.strip() == original.strip():
        raise click.ClickException("the edit changes nothing in the draft: nothing changed "
                                   f"(newsroom approve {tid} approves it as it is)")
    action = "approve_with_edits" if approve_now else "edit"
    _resume(tid, {"action": action, "draft": text, "reviewer": reviewer}, shown["version"])


@click.command()
@click.argument("thread_id")
@click.option("--reason", required=True)
@click.option("--reviewer", default=lambda: os.environ.get("USER", "cli"), show_default="$USER")
@_VERSION_OPTION
def reject(thread_id: str, reason: str, reviewer: str, draft_version: int | None) -> None:
    """Reject the draft in THREAD_ID; nothing is published."""
    _resume(thread_id, {"action": "reject", "reason": reason, "reviewer": reviewer}, draft_version)


@click.command()
@click.argument("thread_id")
@click.option("--reviewer", default=lambda: os.environ.get("USER", "cli"), show_default="$USER")
@click.option("--resend", "resend", default=None, metavar="DEST",
              help="a send to DEST whose outcome was unknown did NOT arrive: send it again")
@click.option("--sent", "sent", default=None, metavar="DEST",
              help="a send to DEST whose outcome was unknown DID arrive: record it, do not send again")
def retry(thread_id: str, reviewer: str, resend: str | None, sent: str | None) -> None:
    """Run a FAILED post again from its last checkpoint (e.g. after its LLM endpoint came back)."""
    from service.runner import NothingToRetry, ThreadBusy
    from service.runner import retry as retry_failed
    from tools.local_llm import local_llm_if_needed

    thread_id = _full_thread_id(thread_id)
    if resend or sent:
        from service.cli.schedule import settle_send

        settle_send(thread_id, destination=resend or sent, sent=bool(sent), actor=reviewer)
    with _resumable_on_interrupt(thread_id), local_llm_if_needed(get_settings()):
        try:
            snap = run(retry_failed(thread_id, actor=reviewer, progress=progress))
        except (NothingToRetry, ThreadBusy) as err:
            raise click.ClickException(str(err)) from None
    print_outcome(snap)
    print_next(snap)


@click.command()
@click.argument("thread_id")
@click.option("--reviewer", default=lambda: os.environ.get("USER", "cli"), show_default="$USER")
def cancel(thread_id: str, reviewer: str) -> None:
    """Stop a post for good; nothing of it is published (a waiting draft is rejected through the ledger)."""
    from service.runner import NothingToCancel, ThreadBusy
    from service.runner import cancel as cancel_post

    thread_id = _full_thread_id(thread_id)
    try:
        done = run(cancel_post(thread_id, reviewer=reviewer))
    except (NothingToCancel, ThreadBusy) as err:
        raise click.ClickException(str(err)) from None
    if done.decision is not None and not done.decision.resumed:
        raise click.ClickException(done.decision.message)
    what = "its waiting draft rejected" if done.decision is not None else "its graph ended"
    click.echo(f"cancelled: thread {thread_id} ({what}, by {reviewer}); nothing will be published")


@click.command()
@click.argument("thread_id")
@click.option("--json", "as_json", is_flag=True)
def status(thread_id: str, as_json: bool) -> None:
    """A post's status, events, LLM calls and cost."""
    from service.operations import view
    from storage.connect import get_database

    thread_id = _full_thread_id(thread_id)

    async def _status():
        return await view(None, await get_database(), thread_id)

    shown = run(_status())
    post_row, events, calls, pubs = shown.post, shown.events, shown.llm_calls, shown.publications
    if post_row is None:
        raise click.ClickException(f"no post with thread id {thread_id}")
    if as_json:
        click.echo(json.dumps({"post": post_row, "events": events, "llm_calls": calls, "publications": pubs},
                              default=str, indent=2))
        return
    click.echo(f"{post_row['thread_id']}  {post_row['status']}  revision {post_row['revision']}  "
               f"topic: {post_row['topic']}")
    click.echo(f"requester {post_row['requester']} via {post_row['source']}; "
               f"{post_row['llm_calls']} LLM calls, {post_row['tokens_in']}+{post_row['tokens_out']} tokens, "
               f"${float(post_row['cost_usd']):.4f}")
    for e in events:
        moved = f"{e['from_status']} -> {e['to_status']}" if e["to_status"] else ""
        what = moved if e["kind"] == "transition" else f"{e['kind']} {moved}".strip()
        detail = {k: v for k, v in (e["detail"] or {}).items() if v not in (None, "", [], {})}
        click.echo(f"  {e['at']:%Y-%m-%d %H:%M:%S}  {e['actor']:<12} {what}  {json.dumps(detail, default=str)[:160]}")
    for p in pubs:
        click.echo(f"published: {p['location']} ({p['destination']}, key {p['publish_key']})")
    for name in shown.missing:
        click.echo(f"not published yet: {name}" + (" (newsroom retry publishes only the missing ones)"
                                                    if post_row["status"] == "failed" else ""))
    if post_row["status"] == "failed":
        click.echo(f"failed: {post_row['status_reason']}\nonce the cause is fixed: newsroom retry {post_row['thread_id']}")
    from service.cli.schedule import print_schedule_of

    print_schedule_of(thread_id)


@click.command("list")
@click.option("--status", "status_filter", default=None)
@click.option("--limit", default=20, show_default=True)
def list_cmd(status_filter: str | None, limit: int) -> None:
    """Recent posts."""
    from storage import posts
    from storage.connect import get_database

    statuses = [s.value for s in posts.PostStatus]
    if status_filter is not None and status_filter not in statuses:
        raise click.BadParameter(f"{status_filter!r} is not a status; one of: {', '.join(statuses)}",
                                 param_hint="'--status'")

    async def _list():
        return await posts.list_posts(await get_database(), status=status_filter, limit=limit)

    rows = run(_list())
    if not rows:
        click.echo(f"no posts with status {status_filter}" if status_filter else "no posts yet: newsroom post 'a topic'")
    for r in rows:
        click.echo(f"{r['thread_id']}  {r['status']:<17} rev {r['revision']}  ${float(r['cost_usd']):.4f}  "
                   f"{r['created_at']:%Y-%m-%d %H:%M}  {r['topic'][:60]}")


@click.command()
@click.option("--topic", default=DEFAULT_DEMO_TOPIC, show_default=True)
@click.option("--max-revisions", type=click.IntRange(0, 10), default=None,
              help="Editor revision cycles for the demo post (default 0 with the local Qwen model, 1 with SmolLM2; "
                   "posts outside the demo use NEWSROOM_MAX_REVISIONS, default 3)")
def demo(topic: str, max_revisions: int | None) -> None:
    """The whole flow on embedded defaults: local LLM, embedded PostgreSQL, a post to the approval gate."""
    from service.runner import NothingToResume, new_thread_id, resume, start_post
    from tools.local_llm import is_on_demand_server, local_llm_if_needed
    from tools.model_store import model_spec

    settings = get_settings()
    click.echo(f"newsroom demo: database {'DATABASE_URL' if settings.database_url else 'embedded PostgreSQL in ' + str(settings.pg_data_dir)}")
    _maybe_ingest_demo_corpus()
    local = is_on_demand_server(settings)
    qwen = local and settings.local_model == "qwen2.5-coder-1.5b"
    overrides = dict(DEMO_OVERRIDES_QWEN) if qwen else {}
    overrides["max_revisions"] = max_revisions if max_revisions is not None else (0 if qwen else 1)
    if local:
        click.echo(f"starting the local LLM ({model_spec(settings.local_model).label} via llama.cpp) if needed; "
                   f"topic: {topic!r}")
    click.echo(f"(the demo allows {overrides['max_revisions']} Editor revision cycle(s) before the draft waits for you: "
               "on 2 CPU cores each cycle takes minutes; other posts use NEWSROOM_MAX_REVISIONS)")
    tid = new_thread_id()
    with _resumable_on_interrupt(tid), local_llm_if_needed(settings):
        snap = run(start_post(topic, requester=os.environ.get("USER", "demo"), source="cli", thread_id=tid,
                               progress=progress, overrides=overrides))
        print_outcome(snap)
        while snap.waiting_for_human and sys.stdin.isatty():
            choice = click.prompt("approve / revise / reject / later", type=click.Choice(["approve", "revise", "reject", "later"]),
                                  default="approve")
            if choice == "later":
                break
            value: dict = {"action": choice, "reviewer": os.environ.get("USER", "demo")}
            if choice == "revise":
                value["feedback"] = click.prompt("feedback for the writer")
            if choice == "reject":
                value["reason"] = click.prompt("reason")
            try:
                snap = run(resume(snap.thread_id, value, progress=progress))
            except NothingToResume as err:
                raise click.ClickException(str(err)) from None
            print_outcome(snap)
    if snap.waiting_for_human:
        click.echo(f"\nThe run is waiting at the approval gate. To publish it:\n  .venv/bin/newsroom approve {snap.thread_id}")
    else:
        print_next(snap)  # a failed run: how to retry it, exit 1


def _maybe_ingest_demo_corpus() -> None:
    """Ingest evals/corpus so the Researcher has sources (unchanged files are skipped on re-runs)."""
    corpus = Path(__file__).resolve().parents[2] / "evals" / "corpus"
    try:
        from service.cli.ingest import ingest_command
    except ImportError as err:  # a bare install without the embedding stack
        click.echo(f"corpus ingestion unavailable ({err}): the Researcher will write ungrounded notes")
        return
    if corpus.exists():
        click.echo(f"ingesting the sample corpus {corpus}")
        click.get_current_context().invoke(ingest_command, paths=(corpus,), reembed=False, quiet=False)
