"""The small approval web page, server-rendered, mounted in the Agent Server by service/http_app.py.

/newsroom/ui                       runs list
/newsroom/ui/runs/{thread_id}      one run: draft, scores, citations, events, LLM calls and cost,
                                   and Approve / Revise / Reject when it waits at the gate
/newsroom/ui/login, /logout        a form that trades NEWSROOM_WEB_TOKEN for a session cookie

Every page needs the token: the cookie from the login form, or `Authorization: Bearer <token>`
(or `X-Newsroom-Token`) for scripts. Decisions go through service/approvals.decide, the same
once-only path as Telegram.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from config import Settings, get_settings
from service import approvals as decisions
from storage import approvals, posts
from storage.db import get_database

log = logging.getLogger(__name__)

BASE = "/newsroom/ui"
COOKIE = "newsroom_session"
# (chat_id, topic, verb, reviewer) -> a StartRun that also reports to Telegram, or None for a plain resume.
StartRunHook = Callable[[int | None, str, str, str], Awaitable[decisions.StartRun | None]]


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


# --- authorization -------------------------------------------------------------------------------------

def session_value(token: str) -> str:
    # The cookie carries a MAC of the token, not the token itself.
    return hmac.new(token.encode(), b"newsroom-web-session-v1", hashlib.sha256).hexdigest()


def authorized(request: Request, settings: Settings) -> bool:
    if settings.web_token is None:
        return False
    token = settings.web_token.get_secret_value()
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-newsroom-token")
    if given and hmac.compare_digest(given.encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE)
    return bool(cookie) and hmac.compare_digest(cookie.encode(), session_value(token).encode())


def same_origin(request: Request) -> bool:
    """A cookie-authorized POST must come from our own pages (SameSite=Strict does most of this)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlparse(origin).netloc == request.headers.get("host", "")


# --- page frame ------------------------------------------------------------------------------------------

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;color:#1d1d1f}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:1.6rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%} td,th{padding:.3rem .5rem;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
.status{font-weight:600} .draft{white-space:pre-wrap;background:#fafafa;border:1px solid #e3e3e3;padding:1rem;border-radius:6px}
.flash{background:#eef6ff;border:1px solid #b6d4fe;padding:.6rem 1rem;border-radius:6px}
.warn{background:#fff4e5;border:1px solid #ffc46b;padding:.6rem 1rem;border-radius:6px}
form.decide{display:flex;gap:.6rem;flex-wrap:wrap;align-items:flex-start;margin:.6rem 0}
form.decide textarea{width:22rem;height:3.2rem} button{padding:.45rem 1rem;font-size:.95rem;cursor:pointer}
nav{display:flex;gap:1rem;align-items:center;justify-content:space-between} code{font-size:.85em}
"""


def page(title: str, body: str, *, status: int = 200, authed: bool = True) -> HTMLResponse:
    logout = (f'<form method="post" action="{BASE}/logout"><button id="logout">Log out</button></form>'
              if authed else "")
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)} · newsroom</title>"
        f"<meta name=viewport content='width=device-width'><style>{STYLE}</style></head><body>"
        f"<nav><a href='{BASE}'>newsroom runs</a>{logout}</nav>{body}</body></html>", status_code=status)


def login_page(message: str = "", status: int = 401) -> HTMLResponse:
    note = f"<p class=warn>{e(message)}</p>" if message else ""
    return page("log in", f"<h1>Log in</h1>{note}<p>This page needs the web token (NEWSROOM_WEB_TOKEN).</p>"
                          f"<form method=post action='{BASE}/login'><input type=password name=token id=token "
                          f"autocomplete=current-password placeholder='web token' required> "
                          f"<button id=login>Log in</button></form>", status=status, authed=False)


def disabled_page() -> HTMLResponse:
    return page("disabled", "<h1>Web approvals are off</h1><p>Set NEWSROOM_WEB_TOKEN on the server to enable "
                            "these pages.</p>", status=503, authed=False)


# --- views ----------------------------------------------------------------------------------------------------

def render_runs(rows: list[dict]) -> str:
    trs = "".join(
        f"<tr><td><a href='{BASE}/runs/{quote(r['thread_id'])}'><code>{e(r['thread_id'][-8:])}</code></a></td>"
        f"<td>{e(r['topic'][:90])}</td><td class=status>{e(r['status'])}</td><td>{r['revision']}</td>"
        f"<td>{e(r['source'])}</td><td>${float(r['cost_usd']):.4f}</td><td>{r['updated_at']:%Y-%m-%d %H:%M}</td></tr>"
        for r in rows)
    return ("<h1>Runs</h1><table id=runs><tr><th>thread</th><th>topic</th><th>status</th><th>rev</th><th>source</th>"
            f"<th>cost</th><th>updated</th></tr>{trs or '<tr><td colspan=7>no runs yet</td></tr>'}</table>")


def render_run(post: dict, values: dict, pending: decisions.PendingInterrupt | None, gate_id: str | None,
               events: list[dict], calls: list[dict], pubs: list[dict], flash: str | None) -> str:
    tid = post["thread_id"]
    out = [f"<h1>{e(post['topic'])}</h1>"]
    if flash:
        out.append(f"<p class=flash id=flash>{e(flash)}</p>")
    out.append(f"<p>thread <code>{e(tid)}</code> · status <span class=status id=status>{e(post['status'])}</span>"
               f" · revision cycles {post['revision']} · requested by {e(post['requester'])} via {e(post['source'])}</p>")
    payload = pending.payload if pending else None
    drafts = values.get("drafts") or []
    draft = (payload or {}).get("draft") or (drafts[-1] if drafts else None)
    if pending and gate_id:
        if payload.get("escalated"):
            out.append(f"<p class=warn>Escalated: {e(payload.get('escalation_reason'))}</p>")
        out.append(
            f"<h2>Decision</h2><p>Draft v{e(draft.get('version'))} waits for approval.</p>"
            f"<form class=decide method=post action='{BASE}/runs/{quote(tid)}/decide'>"
            f"<input type=hidden name=gate_id value='{e(gate_id)}'>"
            "<label>reviewer <input name=reviewer placeholder='your name' value='web' size=12></label>"
            "<button name=action value=approve id=approve>Approve</button></form>"
            f"<form class=decide method=post action='{BASE}/runs/{quote(tid)}/decide'>"
            f"<input type=hidden name=gate_id value='{e(gate_id)}'><input type=hidden name=reviewer value='web'>"
            "<textarea name=feedback id=feedback placeholder='what should the writer change?' required></textarea>"
            "<button name=action value=revise id=revise>Revise</button></form>"
            f"<form class=decide method=post action='{BASE}/runs/{quote(tid)}/decide'>"
            f"<input type=hidden name=gate_id value='{e(gate_id)}'><input type=hidden name=reviewer value='web'>"
            "<textarea name=reason id=reason placeholder='why reject it?' required></textarea>"
            "<button name=action value=reject id=reject>Reject</button></form>")
    if post["status"] == "failed":
        out.append(
            f"<h2>Failed</h2><p class=warn id=failure>{e(post.get('status_reason') or values.get('error'))}</p>"
            f"<form class=decide method=post action='{BASE}/runs/{quote(tid)}/retry'>"
            "<label>reviewer <input name=reviewer placeholder='your name' value='web' size=12></label>"
            "<button id=retry>Retry from where it failed</button></form>")
    if pubs:
        out.append("<h2>Published</h2><ul>" + "".join(
            f"<li id=publication>{e(p['destination'])}: <code>{e(p['location'])}</code> ({p['published_at']:%Y-%m-%d %H:%M})</li>"
            for p in pubs) + "</ul>")
    if draft:
        out.append(f"<h2>Draft v{e(draft.get('version'))}: {e(draft.get('title'))}</h2>"
                   f"<div class=draft id=draft>{e(draft.get('body'))}</div>"
                   f"<p><small>model {e(draft.get('model'))} · prompt {e(draft.get('prompt'))}</small></p>")
    reviews = values.get("reviews") or []
    review = reviews[-1] if reviews else None
    if review:
        verdict = review.get("verdict") or {}
        reasoning = verdict.get("reasoning") or {}
        rows = "".join(f"<tr><td>{e(k)}</td><td>{e(verdict.get(k))}</td><td>{e(reasoning.get(k))}</td></tr>"
                       for k in ("technical_accuracy", "calibration", "mechanistic_depth", "audience_calibration"))
        mean = review.get("mean")
        out.append(f"<h2>Editor's scores (draft v{e(review.get('draft_version'))})</h2>"
                   f"<table id=scores><tr><th>dimension</th><th>score</th><th>reasoning</th></tr>{rows}</table>"
                   f"<p>decision <b>{e(str(review.get('decision')).upper())}</b>"
                   + (f" · mean {mean:.2f}" if mean is not None else "")
                   + f" · flag {e(verdict.get('flag'))} · judge {e(review.get('judge_model'))}"
                   + (f" · error: {e(review.get('error'))}" if review.get("error") else "") + "</p>")
    research = values.get("research") or {}
    cites = research.get("citations") or []
    out.append("<h2>Citations</h2>" + ("<ol id=citations>" + "".join(
        f"<li value={int(c.get('n', 0))}>{e(c.get('source_title'))}"
        + (f" — {e(c.get('heading'))}" if c.get("heading") else "")
        + (f" <small><code>{e(c.get('source_path'))}</code></small>" if c.get("source_path") else "") + "</li>"
        for c in cites) + "</ol>" if cites else "<p>none (ungrounded: verify every claim)</p>"))
    out.append(f"<h2>Cost</h2><p id=cost>${float(post['cost_usd']):.4f} · {post['llm_calls']} LLM calls · "
               f"{post['tokens_in']} tokens in, {post['tokens_out']} out</p>")
    if calls:
        out.append("<table><tr><th>at</th><th>role</th><th>model</th><th>tokens</th><th>cost</th><th>ms</th><th>outcome</th></tr>"
                   + "".join(f"<tr><td>{c['at']:%H:%M:%S}</td><td>{e(c['role'])}</td><td>{e(c['model'])}</td>"
                             f"<td>{c['tokens_in']}+{c['tokens_out']}</td><td>${float(c['cost_usd']):.4f}</td>"
                             f"<td>{c['latency_ms']}</td><td>{e(c['outcome'])}</td></tr>" for c in calls) + "</table>")
    out.append("<h2>Events</h2><table id=events><tr><th>at</th><th>actor</th><th>what</th><th>detail</th></tr>" + "".join(
        f"<tr><td style='white-space:nowrap'>{ev['at']:%m-%d %H:%M:%S}</td><td>{e(ev['actor'])}</td>"
        f"<td>{e(ev['from_status'] + ' → ' + ev['to_status'] if ev['kind'] == 'transition' else ev['kind'])}</td>"
        f"<td><small>{e(json.dumps({k: v for k, v in (ev['detail'] or {}).items() if v not in (None, '', [], {})}, default=str)[:300])}</small></td></tr>"
        for ev in events) + "</table>")
    return "".join(out)


# --- routes ------------------------------------------------------------------------------------------------------

def routes(client_factory: Callable[[], Any], start_run_hook: StartRunHook | None = None) -> list[Route]:
    def guard(request: Request) -> Response | None:
        settings = get_settings()
        if settings.web_token is None:
            return disabled_page()
        if not authorized(request, settings):
            if request.method == "GET":
                return login_page("Log in to see runs.")
            return page("refused", "<h1>Refused</h1><p>Missing or wrong web token. Nothing changed.</p>",
                        status=403, authed=False)
        return None

    async def runs_list(request: Request) -> Response:
        if (refusal := guard(request)) is not None:
            return refusal
        rows = await posts.list_posts(await get_database(), limit=100)
        return page("runs", render_runs(rows))

    async def login(request: Request) -> Response:
        settings = get_settings()
        if settings.web_token is None:
            return disabled_page()
        if request.method == "GET":
            return login_page("", status=200)
        token = (parse_qs((await request.body()).decode(errors="replace")).get("token") or [""])[0]
        if not hmac.compare_digest(token.encode(), settings.web_token.get_secret_value().encode()):
            return login_page("Wrong token.", status=403)
        resp = RedirectResponse(BASE, status_code=303)
        resp.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict", path=BASE,
                        secure=request.url.scheme == "https", max_age=7 * 86400)
        return resp

    async def logout(_: Request) -> Response:
        resp = RedirectResponse(f"{BASE}/login", status_code=303)
        resp.delete_cookie(COOKIE, path=BASE)
        return resp

    async def run_page(request: Request) -> Response:
        if (refusal := guard(request)) is not None:
            return refusal
        tid = request.path_params["thread_id"]
        db = await get_database()
        post = await posts.get_post(db, tid) if "\x00" not in tid else None  # PostgreSQL text cannot hold NUL
        if post is None:
            return page("not found", f"<h1>No run {e(tid)}</h1>", status=404)
        client = client_factory()
        try:
            values = (await client.threads.get_state(tid)).get("values") or {}
        except Exception as err:  # noqa: BLE001 - a post without a server thread (CLI runs) still shows
            log.info("no server state for %s: %s", tid, err)
            values = {}
        pending = await decisions.pending_interrupt(client, tid) if values else None
        gate_id = None
        if pending is not None:
            chat = (post.get("metadata") or {}).get("chat_id")
            gate = await decisions.gate_for(db, pending, chat_id=int(chat) if chat is not None else None)
            gate_id = None if gate.decided else gate.gate_id
        body = render_run(post, values, pending, gate_id, await posts.list_events(db, tid),
                          await posts.llm_calls_for(db, tid), await posts.publications_for(db, tid),
                          request.query_params.get("msg"))
        return page(post["topic"][:60], body)

    async def checked_form_post(request: Request) -> Response | tuple[str, dict[str, str]]:
        """A decision or retry form post: the token, the same origin and no NUL byte (PostgreSQL
        text cannot hold it), or the refusal page. Returns (thread id, form fields)."""
        if (refusal := guard(request)) is not None:
            return refusal
        if not same_origin(request):
            return page("refused", "<h1>Refused</h1><p>Cross-site form post. Nothing changed.</p>", status=403)
        tid = request.path_params["thread_id"]
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        if "\x00" in tid or any("\x00" in v for v in form.values()):
            return page("refused", "<h1>Refused</h1><p>The request holds a NUL character. Nothing changed.</p>",
                        status=400)
        return tid, form

    async def decide(request: Request) -> Response:
        checked = await checked_form_post(request)
        if isinstance(checked, Response):
            return checked
        tid, form = checked
        action = form.get("action", "")
        reviewer = f"{(form.get('reviewer') or 'web').strip()[:60]} (web)"
        text = form.get("feedback") if action == "revise" else form.get("reason")
        db = await get_database()
        gate = await approvals.get_gate(db, form.get("gate_id", ""))
        if gate is not None and gate.thread_id != tid:
            return page("refused", "<h1>Refused</h1><p>That decision belongs to another run. Nothing changed.</p>",
                        status=400)
        post = await posts.get_post(db, tid) or {}
        start_run = None
        if start_run_hook is not None:
            chat = (post.get("metadata") or {}).get("chat_id")
            verb = {"approve": "approved", "revise": "revision requested", "reject": "rejected"}.get(action, action)
            start_run = await start_run_hook(int(chat) if chat is not None else None, post.get("topic", ""), verb, reviewer)
        result = await decisions.decide(client_factory(), db, form.get("gate_id", ""), action=action, text=text,
                                        reviewer=reviewer, via="web", start_run=start_run)
        msg = {"approve": "Approved: the Publisher is publishing it.",
               "revise": "Sent back to the Writer with your feedback.",
               "reject": "Rejected: nothing will be published."}.get(action, "") if result.resumed else result.message
        return RedirectResponse(f"{BASE}/runs/{quote(tid)}?msg={quote(msg)}", status_code=303)

    async def retry(request: Request) -> Response:
        checked = await checked_form_post(request)
        if isinstance(checked, Response):
            return checked
        tid, form = checked
        reviewer = f"{(form.get('reviewer') or 'web').strip()[:60]} (web)"
        db, client = await get_database(), client_factory()
        if await posts.get_post(db, tid) is None:
            return page("not found", f"<h1>No run {e(tid)}</h1>", status=404)
        try:
            config = await decisions.reopen_failed_on_server(client, db, tid, reviewer=reviewer)
        except decisions.RetryRefused as err:
            return RedirectResponse(f"{BASE}/runs/{quote(tid)}?msg={quote(str(err))}", status_code=303)
        try:
            # No input: the run continues from the reopened checkpoint (a server run: Studio shows it).
            await client.runs.create(tid, decisions.GRAPH_ID, input=None, config=config, multitask_strategy="reject")
            msg = "Retrying from where it failed."
        except Exception as err:  # noqa: BLE001 - reported; the reopened run has pending desks: recovery resumes it
            log.warning("retry of %s did not start: %s", tid, err)
            msg = f"Reopened, but the run did not start ({err}); `newsroom recover` or the next server start resumes it."
        return RedirectResponse(f"{BASE}/runs/{quote(tid)}?msg={quote(msg)}", status_code=303)

    return [
        Route(BASE, runs_list),
        Route(f"{BASE}/login", login, methods=["GET", "POST"]),
        Route(f"{BASE}/logout", logout, methods=["POST"]),
        Route(f"{BASE}/runs/{{thread_id}}", run_page),
        Route(f"{BASE}/runs/{{thread_id}}/decide", decide, methods=["POST"]),
        Route(f"{BASE}/runs/{{thread_id}}/retry", retry, methods=["POST"]),
    ]
