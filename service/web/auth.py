"""Who is asking, on the web page: Starlette's AuthenticationMiddleware with WebAuthBackend on every
route (a Bearer token for scripts, or an itsdangerous-signed session cookie backed by a row that
logout revokes; tokens compared in constant time), the security headers, the failed-login limiter
and the same-origin check of cookie-authorized posts."""
from __future__ import annotations

import collections
import hmac
import time
from urllib.parse import urlparse

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Identity, Settings, get_settings
from service.http_guard import request_scheme
from storage import sessions
from storage.connect import get_database

BASE = "/newsroom/ui"
COOKIE = "newsroom_session"
SHARED_WEB_NAME = "web"
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                                  b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on our own
    # form posts, which the same-origin check (and the server guard) must refuse.
    (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"), (b"cache-control", b"no-store"),
]


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


def signer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
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
            session_id = signer(settings, "web-session").loads(cookie, max_age=settings.session_max_age_s)
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
