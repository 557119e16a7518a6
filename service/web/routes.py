"""The small approval web page, server-rendered, mounted in the Agent Server by service/http_app.py.

/newsroom/ui                       runs list
/newsroom/ui/runs/{thread_id}      one run: draft, scores, citations, events, LLM calls and cost,
                                   and Approve / Revise / Reject when it waits at the gate
/newsroom/ui/login, /logout        a form that trades a token for a session

Who may use it (Starlette's AuthenticationMiddleware with WebAuthBackend on every route): an
approver's or viewer's token (NEWSROOM_APPROVER_TOKENS / NEWSROOM_VIEWER_TOKENS) or the shared
NEWSROOM_WEB_TOKEN (an approver named "web" whose reviewer name is typed into the form), either
logged in (a session cookie: an itsdangerous-signed session id with an expiry, backed by a row that
logout revokes) or as `Authorization: Bearer <token>` for scripts. Viewers see pages and decide
nothing. Decisions go through service/decisions.decide, the same once-only path as Telegram.
Pages are Jinja2 templates (service/web/templates/, autoescaped); the flash message after a decision
travels in a signed cookie (not in the URL); every response carries a Content-Security-Policy.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from config import get_settings
from service import decisions, operations, scheduling
from service.engine import ServerEngine
from service.views import retry_refused_text
from service.web.auth import (
    BASE,
    COOKIE,
    SecurityHeaders,
    WebAuthBackend,
    is_https,
    limiter,
    same_origin,
    signer,
    web_enabled,
    web_identity,
)
from storage import approvals, posts, sessions
from storage.connect import get_database
from tools.redaction import public_reason

log = logging.getLogger(__name__)

FLASH_COOKIE = "newsroom_flash"
FLASH_MAX_AGE_S = 120
DIMENSIONS = ("technical_accuracy", "calibration", "mechanistic_depth", "audience_calibration")
# (chat_id, topic, verb, reviewer) -> a StartRun that also reports to Telegram, or None for a plain resume.
StartRunHook = Callable[[int | None, str, str, str], Awaitable[decisions.StartRun | None]]

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


# --- rendering ----------------------------------------------------------------------------------------------

def render(request: Request, template: str, status: int = 200, **context) -> Response:
    user = request.user if getattr(request.user, "is_authenticated", False) else None
    return templates.TemplateResponse(request, template, {"base": BASE, "user": user, **context},
                                      status_code=status)


def message(request: Request, heading: str, text: str, status: int) -> Response:
    return render(request, "message.html", status, title=heading.lower(), heading=heading, text=text)


def login_page(request: Request, note: str = "", status: int = 401) -> Response:
    return render(request, "login.html", status, title="log in", note=note)


def disabled_page(request: Request) -> Response:
    return message(request, "Web approvals are off", "Set NEWSROOM_APPROVER_TOKENS (or NEWSROOM_VIEWER_TOKENS, "
                   "or NEWSROOM_WEB_TOKEN) on the server to enable these pages.", 503)


def redirect_with_flash(request: Request, url: str, text: str) -> Response:
    resp = RedirectResponse(url, status_code=303)
    if text:
        resp.set_cookie(FLASH_COOKIE, signer(get_settings(), "web-flash").dumps(text[:500]), max_age=FLASH_MAX_AGE_S,
                        httponly=True, samesite="strict", path=BASE, secure=is_https(request))
    return resp


def take_flash(request: Request) -> str | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    try:
        return str(signer(get_settings(), "web-flash").loads(value, max_age=FLASH_MAX_AGE_S))
    except BadSignature:
        return None  # forged: shown to nobody


def _event_detail(ev: dict) -> str:
    detail = {k: v for k, v in (ev["detail"] or {}).items() if v not in (None, "", [], {})}
    return json.dumps(detail, default=str)[:300]


# --- routes ------------------------------------------------------------------------------------------------------

def refusal_for(request: Request) -> Response | None:
    """Why this request gets no page: the pages are off (503), or nobody is logged in (the login
    form for a GET, 403 for anything else)."""
    if not web_enabled(get_settings()):
        return disabled_page(request)
    if not request.user.is_authenticated:
        if request.method == "GET":
            return login_page(request, "Log in to see runs.")
        return message(request, "Refused", "Missing or wrong credential. Nothing changed.", 403)
    return None


class RequireUser:
    """Every page but login and logout needs a logged-in user (after AuthenticationMiddleware has
    set request.user): the refusal is answered here, before any handler runs (pure ASGI)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (refusal := refusal_for(Request(scope, receive))) is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def routes(client_factory: Callable[[], Any], start_run_hook: StartRunHook | None = None) -> list[Route]:
    async def runs_list(request: Request) -> Response:
        rows = await posts.list_posts(await get_database(), limit=100)
        return render(request, "runs.html", title="runs", rows=rows)

    async def login(request: Request) -> Response:
        settings = get_settings()
        if not web_enabled(settings):
            return disabled_page(request)
        if request.method == "GET":
            return login_page(request, "", status=200)
        client = request.client.host if request.client else "?"
        if limiter.blocked(client, settings.login_max_failures):
            return login_page(request, "Too many failed logins from here: wait a minute.", status=429)
        async with request.form(max_files=0, max_fields=5, max_part_size=1024) as form:
            token = str(form.get("token") or "")
        identity = web_identity(settings, token)
        if identity is None:
            limiter.failed(client)
            return login_page(request, "Wrong token.", status=403)
        session_id = await sessions.open_session(await get_database(), identity=identity.name, role=identity.role,
                                                 max_age_s=settings.session_max_age_s)
        resp = RedirectResponse(BASE, status_code=303)
        resp.set_cookie(COOKIE, signer(settings, "web-session").dumps(session_id), httponly=True, samesite="strict",
                        path=BASE, secure=is_https(request), max_age=int(settings.session_max_age_s))
        return resp

    async def logout(request: Request) -> Response:
        user = request.user
        if getattr(user, "session_id", None):
            await sessions.revoke_session(await get_database(), user.session_id)  # the cookie is dead from here on
        resp = RedirectResponse(f"{BASE}/login", status_code=303)
        resp.delete_cookie(COOKIE, path=BASE)
        return resp

    async def run_page(request: Request) -> Response:
        tid = request.path_params["thread_id"]
        db = await get_database()
        # PostgreSQL text cannot hold NUL
        shown = await operations.view(None, db, tid) if "\x00" not in tid else operations.PostView(None, [], [], [], [])
        post = shown.post
        if post is None:
            return message(request, f"No run {tid[:80]}", "Nothing by that id.", 404)
        client = client_factory()
        try:
            values = (await client.threads.get_state(tid)).get("values") or {}
        except Exception as err:  # noqa: BLE001 - a post without a server thread (CLI runs) still shows
            log.info("no server state for %s: %s", tid, err)
            values = {}
        pending = await ServerEngine(client).pending(tid) if values else None
        gate_id = None
        if pending is not None:
            chat = (post.get("metadata") or {}).get("chat_id")
            gate = await decisions.gate_for(db, pending, chat_id=int(chat) if chat is not None else None)
            gate_id = None if gate.decided else gate.gate_id
        drafts = values.get("drafts") or []
        draft = (pending.payload if pending else {}).get("draft") or (drafts[-1] if drafts else None)
        reviews = values.get("reviews") or []
        review = reviews[-1] if reviews else None
        check = citation_check_for(values, draft)
        research = values.get("research") or {}
        events = [dict(ev, shown=_event_detail(ev)) for ev in shown.events]
        pubs = shown.publications
        resp = render(request, "run.html", title=post["topic"][:60], post=post, pending=pending, gate_id=gate_id,
                      draft=draft, review=review, dimensions=DIMENSIONS, flash=take_flash(request),
                      review_error=public_reason((review or {}).get("error")),
                      failure=public_reason(post.get("status_reason") or values.get("error")),
                      cites=[dict(c, link=c.get("url") if str(c.get("url", "")).startswith(("http://", "https://"))
                                  else None) for c in (research.get("citations") or [])],
                      check=check, claims=[c for c in (check or {}).get("claims") or [] if c.get("status") != "not_a_claim"],
                      ungrounded=research.get("ungrounded_reason"), fetch_errors=research.get("fetch_errors") or [],
                      events=events, calls=shown.llm_calls, pubs=pubs,
                      estimate=next(((ev["detail"] or {}).get("summary") for ev in events
                                     if ev["kind"] == "cost_estimate"), None),
                      missing=shown.missing,
                      can_decide=request.user.who.can_decide, shared_login=request.user.shared,
                      can_cancel=request.user.who.can_decide and post["status"] not in {str(s) for s in posts.TERMINAL},
                      edit_text=f"# {draft.get('title', '')}\n\n{draft.get('body', '')}" if draft else "",
                      edit_max_chars=get_settings().edit_max_chars, **await scheduling.web_context(db, tid))
        resp.delete_cookie(FLASH_COOKIE, path=BASE)
        return resp

    async def checked_form_post(request: Request) -> Response | tuple[str, dict[str, str]]:
        """A decision, retry or cancel form post (RequireUser let a user through): an approver, the
        same origin and no NUL byte (PostgreSQL text cannot hold it), or the refusal page. Returns
        (thread id, form fields)."""
        if not request.user.who.can_decide:
            return message(request, "Refused", "Viewers cannot decide. Nothing changed.", 403)
        if not same_origin(request):
            return message(request, "Refused", "Cross-site form post. Nothing changed.", 403)
        tid = request.path_params["thread_id"]
        # A part as large as an edited draft may be (NEWSROOM_EDIT_MAX_CHARS, 4 bytes a character at most).
        part_limit = max(16 * 1024, 4 * get_settings().edit_max_chars)
        async with request.form(max_files=0, max_fields=20, max_part_size=part_limit) as data:
            form = {k: str(v) for k, v in data.items()}
        if "\x00" in tid or any("\x00" in v for v in form.values()):
            return message(request, "Refused", "The request holds a NUL character. Nothing changed.", 400)
        return tid, form

    def reviewer_of(request: Request, form: dict[str, str]) -> str:
        if request.user.shared:
            return f"{(form.get('reviewer') or 'web').strip()[:60]} (web)"
        return f"{request.user.display_name} (web)"  # a personal token: the name is the login's, not typed

    async def decide(request: Request) -> Response:
        checked = await checked_form_post(request)
        if isinstance(checked, Response):
            return checked
        tid, form = checked
        action = form.get("action", "")
        reviewer = reviewer_of(request, form)
        text = form.get("feedback") if action == "revise" else form.get("reason")
        edited = form.get("draft") if action in decisions.EDIT_ACTIONS else None
        db = await get_database()
        gate = await approvals.get_gate(db, form.get("gate_id", ""))
        if gate is not None and gate.thread_id != tid:
            return message(request, "Refused", "That decision belongs to another run. Nothing changed.", 400)
        post = await posts.get_post(db, tid) or {}
        if action == "approve" and (form.get("publish_at") or "").strip():  # approve now, publish at a time
            msg = await scheduling.web_schedule(client_factory(), db, form.get("gate_id", ""), form["publish_at"],
                                                tz=form.get("tz"), reviewer=reviewer)
            return redirect_with_flash(request, f"{BASE}/runs/{quote(tid)}", public_reason(msg))
        start_run = None
        if start_run_hook is not None:
            chat = (post.get("metadata") or {}).get("chat_id")
            verb = {"approve": "approved", "revise": "revision requested", "reject": "rejected", "edit": "edited",
                    "approve_with_edits": "approved with edits"}.get(action, action)
            start_run = await start_run_hook(int(chat) if chat is not None else None, post.get("topic", ""), verb, reviewer)
        result = await decisions.decide(client_factory(), db, form.get("gate_id", ""), action=action, text=text,
                                        reviewer=reviewer, via="web", start_run=start_run, draft=edited,
                                        section=form.get("section") if action == "revise" else None)
        msg = {"approve": "Approved: the Publisher is publishing it.",
               "revise": "Sent back to the Writer with your feedback"
                         + (f" (only the section “{result.gate.section}”)." if result.gate and result.gate.section else "."),
               "reject": "Rejected: nothing will be published.",
               "edit": "Your edit is the new version: the citation check runs on it, then it waits here again.",
               "approve_with_edits": "Approved with your edits: published once the citation check passes "
                                     "(if it finds unsupported claims, it waits here again showing them)."
               }.get(action, "") if result.resumed else result.message
        return redirect_with_flash(request, f"{BASE}/runs/{quote(tid)}", public_reason(msg))

    async def retry(request: Request) -> Response:
        checked = await checked_form_post(request)
        if isinstance(checked, Response):
            return checked
        tid, form = checked
        reviewer = reviewer_of(request, form)
        db, engine = await get_database(), ServerEngine(client_factory())
        if await posts.get_post(db, tid) is None:
            return message(request, f"No run {tid[:80]}", "Nothing by that id.", 404)
        try:
            overrides = await operations.reopen_failed(engine, db, tid, actor=reviewer)
        except operations.NothingToRetry as err:
            return redirect_with_flash(request, f"{BASE}/runs/{quote(tid)}", public_reason(retry_refused_text(err)))
        try:
            # No input: the run continues from the reopened checkpoint (a server run: Studio shows it).
            await engine.submit(tid, None, config={"configurable": overrides} if overrides else None)
            msg = "Retrying from where it failed."
        except Exception as err:  # noqa: BLE001 - reported; the reopened run has pending desks: recovery resumes it
            log.warning("retry of %s did not start: %s", tid, err)
            msg = (f"Reopened, but the run did not start ({public_reason(str(err))}); `newsroom recover` or the next "
                   "server start resumes it.")
        return redirect_with_flash(request, f"{BASE}/runs/{quote(tid)}", msg)

    async def cancel(request: Request) -> Response:
        checked = await checked_form_post(request)
        if isinstance(checked, Response):
            return checked
        tid, form = checked
        reviewer = reviewer_of(request, form)
        db = await get_database()
        post = await posts.get_post(db, tid)
        if post is None:
            return message(request, f"No run {tid[:80]}", "Nothing by that id.", 404)
        chat = (post.get("metadata") or {}).get("chat_id")
        chat = int(chat) if chat is not None else None
        start_run = await start_run_hook(chat, post["topic"], "cancelled", reviewer) if start_run_hook else None
        try:
            done = await operations.cancel(ServerEngine(client_factory()), db, tid, reviewer=reviewer, via="web",
                                           chat_id=chat, start_run=start_run)
        except operations.NothingToCancel as err:
            return redirect_with_flash(request, f"{BASE}/runs/{quote(tid)}", str(err))
        if done.decision is not None:
            msg = "Cancelled: the waiting draft was rejected; nothing will be published." if done.decision.resumed \
                else done.decision.message
        else:
            n = done.runs_stopped
            msg = f"Cancelled ({n} run{'s' if n != 1 else ''} stopped). Nothing will be published."
        return redirect_with_flash(request, f"{BASE}/runs/{quote(tid)}", public_reason(msg))

    identified = [Middleware(SecurityHeaders), Middleware(AuthenticationMiddleware, backend=WebAuthBackend())]
    guarded = [*identified, Middleware(RequireUser)]  # login and logout work without a user
    return [
        Route(BASE, runs_list, middleware=guarded),
        Route(f"{BASE}/login", login, methods=["GET", "POST"], middleware=identified),
        Route(f"{BASE}/logout", logout, methods=["POST"], middleware=identified),
        Route(f"{BASE}/runs/{{thread_id}}", run_page, middleware=guarded),
        Route(f"{BASE}/runs/{{thread_id}}/decide", decide, methods=["POST"], middleware=guarded),
        Route(f"{BASE}/runs/{{thread_id}}/retry", retry, methods=["POST"], middleware=guarded),
        Route(f"{BASE}/runs/{{thread_id}}/cancel", cancel, methods=["POST"], middleware=guarded),
    ]


__all__ = ["BASE", "StartRunHook", "routes"]


def citation_check_for(values: dict, draft: dict | None) -> dict | None:
    """The citation check of the draft shown (the Editor's gate in front of the judge)."""
    if not draft:
        return None
    return next((c for c in reversed(values.get("citation_checks") or [])
                 if c.get("draft_version") == draft.get("version")), None)
