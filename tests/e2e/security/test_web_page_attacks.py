"""Hostile suite, the web page of a real `newsroom serve`: sessions that are signed, expire and end
at logout; a login rate limit; viewers who decide nothing; a flash message nobody can forge; a
Content-Security-Policy on every page; weak tokens refused at start."""
from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from storage import posts
from tests.approval_fixtures import WEB_TOKEN
from tests.e2e.security.test_agent_server_attacks import _at_gate
from tests.server_fixtures import APPROVER_TOKEN, ROOT, VIEWER_TOKEN

pytestmark = pytest.mark.slow


def _login(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return http.post("/newsroom/ui/login", data={"token": token})


async def test_a_session_is_signed_and_ends_at_logout(approval_server, approval_script):
    tid = await _at_gate(approval_server.url, "Sessions end")
    async with httpx.AsyncClient(base_url=approval_server.url, timeout=30) as http:
        ok = await _login(http, APPROVER_TOKEN)
        assert ok.status_code == 303, ok.text
        cookie = http.cookies.get("newsroom_session")
        assert cookie and APPROVER_TOKEN not in cookie  # an opaque signed session id, not the token
        page = await http.get(f"/newsroom/ui/runs/{tid}")
        assert page.status_code == 200 and "id=approve" in page.text and "dana (approver)" in page.text
        for header in ("content-security-policy", "x-frame-options", "x-content-type-options"):
            assert header in page.headers
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert (await http.post("/newsroom/ui/logout")).status_code == 303
    # the same cookie, replayed after logout: refused (the session row is revoked)
    async with httpx.AsyncClient(base_url=approval_server.url, timeout=30, cookies={"newsroom_session": cookie}) as http:
        assert (await http.get(f"/newsroom/ui/runs/{tid}")).status_code == 401
    # a forged one (the old HMAC(b"", ...) trick, or any unsigned value): refused
    for forged in ("0" * 64, cookie[:-4] + "AAAA", "null"):
        async with httpx.AsyncClient(base_url=approval_server.url, timeout=30,
                                     cookies={"newsroom_session": forged}) as http:
            assert (await http.get("/newsroom/ui")).status_code == 401


async def test_viewers_read_and_decide_nothing(approval_server, approval_script, db):
    tid = await _at_gate(approval_server.url, "Viewers only look")
    headers = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    async with httpx.AsyncClient(base_url=approval_server.url, timeout=30, follow_redirects=False) as http:
        page = await http.get(f"/newsroom/ui/runs/{tid}", headers=headers)
        assert page.status_code == 200 and "GQA and the KV cache" in page.text and "id=approve" not in page.text
        gate_id = (await http.get(f"/newsroom/ui/runs/{tid}", headers={"Authorization": f"Bearer {WEB_TOKEN}"})
                   ).text.split("name=gate_id value='")[1].split("'")[0]
        refused = await http.post(f"/newsroom/ui/runs/{tid}/decide", data={"action": "approve", "gate_id": gate_id},
                                  headers=headers)
        assert refused.status_code == 403
    assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"


async def test_flash_text_cannot_be_injected(approval_server, approval_script):
    tid = await _at_gate(approval_server.url, "Flash messages are signed")
    headers = {"Authorization": f"Bearer {WEB_TOKEN}"}
    async with httpx.AsyncClient(base_url=approval_server.url, timeout=30) as http:
        # the old ?msg= parameter is ignored; a hand-made flash cookie is not shown either
        page = await http.get(f"/newsroom/ui/runs/{tid}", params={"msg": "Your token expired: re-enter it at evil"},
                              headers=headers, cookies={"newsroom_flash": "Your token expired: go to evil.example"})
        assert "evil" not in page.text and "id=flash" not in page.text


async def test_login_is_rate_limited(approval_server):
    # From an address of its own (127.0.0.2): the limit then blocks this client only, not the
    # other tests' logins from 127.0.0.1 for the next minute.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=approval_server.url, timeout=30, transport=transport) as http:
        statuses = [(await _login(http, f"guess-{i}")).status_code for i in range(8)]
        assert statuses[:5] == [403] * 5 and statuses[-1] == 429, statuses
        # even the right token waits out the minute from this address
        assert (await _login(http, APPROVER_TOKEN)).status_code == 429
        # an empty token never logs in
        assert (await http.post("/newsroom/ui/login", data={"token": ""})).status_code in (403, 429)


@pytest.mark.parametrize("variable,value", [("NEWSROOM_WEB_TOKEN", ""), ("NEWSROOM_WEB_TOKEN", "short"),
                                            ("NEWSROOM_SERVICE_TOKEN", ""), ("NEWSROOM_TELEGRAM_WEBHOOK_SECRET", "x"),
                                            ("NEWSROOM_APPROVER_TOKENS", "ann:tooshort")])
def test_weak_or_empty_secrets_refuse_to_start(variable, value, session_dir):
    env = dict(os.environ, NEWSROOM_SERVICE_TOKEN="s" * 40)
    env[variable] = value
    out = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--port", "1"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and variable in out.stderr and "at least 32 characters" in out.stderr, out.stderr
    assert value not in ("short", "ann:tooshort") or value not in out.stderr.replace(variable, "")


def test_no_service_token_refuses_to_start(session_dir):
    env = {k: v for k, v in os.environ.items() if k != "NEWSROOM_SERVICE_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--port", "1"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "NEWSROOM_SERVICE_TOKEN: required by `newsroom serve`" in out.stderr, out.stderr


def test_forwarded_proto_is_trusted_only_when_configured():
    from starlette.datastructures import Headers

    from service.http_guard import request_scheme

    scope = {"type": "http", "scheme": "http", "headers": [(b"x-forwarded-proto", b"https")]}
    headers = Headers(scope=scope)
    assert request_scheme(scope, headers, trust_forwarded=False) == "http"  # anyone can send the header
    assert request_scheme(scope, headers, trust_forwarded=True) == "https"  # behind the operator's TLS proxy


async def test_an_untrusted_forwarded_proto_does_not_change_the_cookie(approval_server):
    async with httpx.AsyncClient(base_url=approval_server.url, timeout=30) as http:
        ok = await http.post("/newsroom/ui/login", data={"token": VIEWER_TOKEN}, headers={"X-Forwarded-Proto": "https"})
        assert ok.status_code in (303, 429)
        if ok.status_code == 303:
            cookie = ok.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
