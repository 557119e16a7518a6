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
nothing. Decisions go through service/approvals.decide, the same once-only path as Telegram.
Pages are Jinja2 templates (service/templates/, autoescaped); the flash message after a decision
travels in a signed cookie (not in the URL); every response carries a Content-Security-Policy.
"""
from __future__ import annotations

import collections
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Identity, Settings, get_settings
from service import approvals as decisions
from service import scheduling
from service.http_guard import request_scheme
from storage import approvals, posts, sessions
from storage.connect import get_database
from tools.publish import missing_destinations
from tools.redaction import public_reason

log = logging.getLogger(__name__)

BASE = "/newsroom/ui"
COOKIE = "newsroom_session"
FLASH_COOKIE = "newsroom_flash"
FLASH_MAX_AGE_S = 120
SHARED_WEB_NAME = "web"
DIMENSIONS = ("technical_accuracy", "calibration", "mechanistic_depth", "audience_calibration")
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                                  b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on our own
    # form posts, which the same-origin check (and the server guard) must refuse.
    (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"), (b"cache-control", b"no-store"),
]
# (chat_id, topic, verb, reviewer) -> a StartRun that also reports to Telegram, or None for a plain resume.
StartRunHook = Callable[[int | None, str, str, str], Awaitable[decisions.StartRun | None]]

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


# --- who is asking -------------------------------------------------------------------------------------

class WebUser(BaseUser):
    def __init__(self, identity: Identity, *, session_id: str | None = None):
        self.who, self.session_id = identity, session_id

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.who.name

    @property
    def role(self) -> str:
        return self.who.role

    @property
    def shared(self) -> bool:
        """The shared NEWSROOM_WEB_TOKEN: the reviewer types a name (recorded as "NAME (web)")."""
        return self.who.name == SHARED_WEB_NAME and self.who.role == "approver"


def web_enabled(settings: Settings) -> bool:
    return settings.web_token is not None or any(i.role != "service" for _, i in settings.identities())


def web_identity(settings: Settings, token: str | None) -> Identity | None:
    """An approver or viewer token, or the shared web token (compared in constant time)."""
    if not token:
        return None
    found = settings.identify(token)
    if settings.web_token is not None and hmac.compare_digest(token.strip().encode(),
                                                              settings.web_token.get_secret_value().encode()):
        found = Identity(name=SHARED_WEB_NAME, role="approver")
    return found if found is not None and found.role != "service" else None


def _signer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.signing_key(purpose), salt=f"newsroom-{purpose}")


class WebAuthBackend(AuthenticationBackend):
    """A Bearer token (scripts) or the session cookie (a browser that logged in)."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        settings = get_settings()
        auth = conn.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else conn.headers.get("x-newsroom-token")
        if token:
            identity = web_identity(settings, token)
            return (AuthCredentials([identity.role]), WebUser(identity)) if identity else None
        cookie = conn.cookies.get(COOKIE)
        if not cookie or not web_enabled(settings):
            return None
        try:
            session_id = _signer(settings, "web-session").loads(cookie, max_age=settings.session_max_age_s)
        except BadSignature:  # forged, tampered or expired (SignatureExpired is a BadSignature)
            return None
        row = await sessions.live_session(await get_database(), str(session_id))
        if row is None:  # logged out (revoked) or past its expiry
            return None
        identity = Identity(name=row["identity"], role=row["role"])
        return AuthCredentials([identity.role]), WebUser(identity, session_id=row["session_id"])


class SecurityHeaders:
    """CSP and friends on every page of the web UI (pure ASGI)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), *SECURITY_HEADERS])
            await send(message)

        await self.app(scope, receive, with_headers)


class LoginLimiter:
    """Failed logins per client address in a sliding minute (memory: one server process)."""

    def __init__(self):
        self._failures: dict[str, collections.deque] = {}

    def blocked(self, client: str, limit: int) -> bool:
        recent = self._failures.get(client)
        now = time.monotonic()
        while recent and now - recent[0] > 60:
            recent.popleft()
        return bool(recent) and len(recent) >= limit

    def failed(self, client: str) -> None:
        if len(self._failures) > 10000:  # bounded: a spray of addresses cannot grow it forever
            self._failures.clear()
        self._failures.setdefault(client, collections.deque()).append(time.monotonic())


limiter = LoginLimiter()


def same_origin(request: Request) -> bool:
    """A cookie-authorized POST must come from our own pages (SameSite=Strict does most of this)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlparse(origin).netloc == request.headers.get("host", "")


def is_https(request: Request) -> bool:
    return request_scheme(request.scope, request.headers, get_settings().trust_forwarded_proto) == "https"


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
        resp.set_cookie(FLASH_COOKIE, _signer(get_settings(), "web-flash").dumps(text[:500]), max_age=FLASH_MAX_AGE_S,
                        httponly=True, samesite="strict", path=BASE, secure=is_https(request))
    return resp


def take_flash(request: Request) -> str | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value:
        return None
    try:
        return str(_signer(get_settings(), "web-flash").loads(value, max_age=FLASH_MAX_AGE_S))
    except BadSignature:
        return None  # forged: shown to nobody


def _event_detail(ev: dict) -> str:
    detail = {k: v for k, v in (ev["detail"] or {}).items() if v not in (None, "", [], {})}
    return json.dumps(detail, default=str)[:300]


# --- routes ------------------------------------------------------------------------------------------------------

def routes(client_factory: Callable[[], Any], start_run_hook: StartRunHook | None = None) -> list[Route]:
    def refused(request: Request) -> Response | None:
        if not web_enabled(get_settings()):
            return disabled_page(request)
        if not request.user.is_authenticated:
            if request.method == "GET":
                return login_page(request, "Log in to see runs.")
            return message(request, "Refused", "Missing or wrong credential. Nothing changed.", 403)
        return None

    async def runs_list(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
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
        resp.set_cookie(COOKIE, _signer(settings, "web-session").dumps(session_id), httponly=True, samesite="strict",
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
        if (refusal := refused(request)) is not None:
            return refusal
        tid = request.path_params["thread_id"]
        db = await get_database()
        post = await posts.get_post(db, tid) if "\x00" not in tid else None  # PostgreSQL text cannot hold NUL
        if post is None:
            return message(request, f"No run {tid[:80]}", "Nothing by that id.", 404)
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
        drafts = values.get("drafts") or []
        draft = (pending.payload if pending else {}).get("draft") or (drafts[-1] if drafts else None)
        reviews = values.get("reviews") or []
        review = reviews[-1] if reviews else None
        check = citation_check_for(values, draft)
        research = values.get("research") or {}
        events = [dict(ev, shown=_event_detail(ev)) for ev in await posts.list_events(db, tid)]
        pubs = await posts.publications_for(db, tid)
        resp = render(request, "run.html", title=post["topic"][:60], post=post, pending=pending, gate_id=gate_id,
                      draft=draft, review=review, dimensions=DIMENSIONS, flash=take_flash(request),
                      review_error=public_reason((review or {}).get("error")),
                      failure=public_reason(post.get("status_reason") or values.get("error")),
                      cites=[dict(c, link=c.get("url") if str(c.get("url", "")).startswith(("http://", "https://"))
                                  else None) for c in (research.get("citations") or [])],
                      check=check, claims=[c for c in (check or {}).get("claims") or [] if c.get("status") != "not_a_claim"],
                      ungrounded=research.get("ungrounded_reason"), fetch_errors=research.get("fetch_errors") or [],
                      events=events, calls=await posts.llm_calls_for(db, tid), pubs=pubs,
                      estimate=next(((ev["detail"] or {}).get("summary") for ev in events
                                     if ev["kind"] == "cost_estimate"), None),
                      missing=missing_destinations(post, pubs, get_settings().publish_destinations),
                      can_decide=request.user.who.can_decide, shared_login=request.user.shared,
                      edit_text=f"# {draft.get('title', '')}\n\n{draft.get('body', '')}" if draft else "",
                      edit_max_chars=get_settings().edit_max_chars, **await scheduling.web_context(db, tid))
        resp.delete_cookie(FLASH_COOKIE, path=BASE)
        return resp

    async def checked_form_post(request: Request) -> Response | tuple[str, dict[str, str]]:
        """A decision or retry form post: an approver, the same origin and no NUL byte (PostgreSQL
        text cannot hold it), or the refusal page. Returns (thread id, form fields)."""
        if (refusal := refused(request)) is not None:
            return refusal
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
        db, client = await get_database(), client_factory()
        if await posts.get_post(db, tid) is None:
            return message(request, f"No run {tid[:80]}", "Nothing by that id.", 404)
        try:
            config = await decisions.reopen_failed_on_server(client, db, tid, reviewer=reviewer)
        except decisions.RetryRefused as err:
            return redirect_with_flash(request, f"{BASE}/runs/{quote(tid)}", public_reason(str(err)))
        try:
            # No input: the run continues from the reopened checkpoint (a server run: Studio shows it).
            await client.runs.create(tid, decisions.GRAPH_ID, input=None, config=config, multitask_strategy="reject")
            msg = "Retrying from where it failed."
        except Exception as err:  # noqa: BLE001 - reported; the reopened run has pending desks: recovery resumes it
            log.warning("retry of %s did not start: %s", tid, err)
            msg = (f"Reopened, but the run did not start ({public_reason(str(err))}); `newsroom recover` or the next "
                   "server start resumes it.")
        return redirect_with_flash(request, f"{BASE}/runs/{quote(tid)}", msg)

    guarded = [Middleware(SecurityHeaders), Middleware(AuthenticationMiddleware, backend=WebAuthBackend())]
    return [
        Route(BASE, runs_list, middleware=guarded),
        Route(f"{BASE}/login", login, methods=["GET", "POST"], middleware=guarded),
        Route(f"{BASE}/logout", logout, methods=["POST"], middleware=guarded),
        Route(f"{BASE}/runs/{{thread_id}}", run_page, middleware=guarded),
        Route(f"{BASE}/runs/{{thread_id}}/decide", decide, methods=["POST"], middleware=guarded),
        Route(f"{BASE}/runs/{{thread_id}}/retry", retry, methods=["POST"], middleware=guarded),
    ]


__all__ = ["routes", "WebAuthBackend", "WebUser", "web_identity", "same_origin", "BASE", "COOKIE"]


def citation_check_for(values: dict, draft: dict | None) -> dict | None:
    """The citation check of the draft shown (the Editor's gate in front of the judge)."""
    if not draft:
        return None
    return next((c for c in reversed(values.get("citation_checks") or [])
                 if c.get("draft_version") == draft.get("version")), None)
