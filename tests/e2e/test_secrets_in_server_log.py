"""R5 (logs), the Agent Server's own log: no secret reaches it, on the happy path or the error paths.

A real `newsroom serve` (langgraph dev) runs with every secret set to a recognisable canary: the
OpenAI-compatible endpoint's key, the Anthropic key (the judge really goes to an Anthropic-compatible
endpoint: the scripted server), the Telegram bot token (the bot talks to a fake Bot API, whose URLs
carry the token: {base}/bot{token}/{method}), the webhook secret, the web approval token, the
Langfuse secret key (its host is down: export fails, and says so) and a database password (in
DATABASE_URL, with characters that must be URL-quoted; the embedded server trusts local
connections, so the password is carried but never checked). At DEBUG, the server then:

  - runs a post through langgraph_sdk to the gate; the writer's and the judge's first calls fail
    with a 500 whose body quotes the LLM key (an upstream echoing credentials), so retries log;
  - is resumed with an invalid value (the gate asks again), then approved: the post publishes;
  - fails two runs on malformed input that holds the LLM key (pydantic quotes it whole, or cut
    short as head...tail when the input is long), so tracebacks are logged;
  - takes Telegram webhook deliveries: one with a wrong secret, one from a chat that may use the
    bot (the bot starts and answers through the fake Bot API; PTB logs its URL, which holds the token);
  - is asked for a web page with the web token in the query string (a client's mistake: the
    access log prints request paths) and with a wrong bearer token;
  - answers a deep health check.

Everything the server process printed (stdout and stderr, one log file) is searched for each
canary, its URL-quoted, JSON-escaped and base64 forms, every 12-character run of it (a secret cut
short is still a leak), and the Langfuse Basic credentials.
"""
from __future__ import annotations

import base64
import json
import os
import re
import time
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import httpx
import pytest

from storage import posts
from tests.engine_fixtures import PASSING, WRITER, draft_reply
from tests.fake_telegram import FakeTelegram
from tests.scripted_llm import Fault
from tests.server_fixtures import SERVICE_TOKEN, VIEWER_TOKEN, AgentServer, free_port, service_client
from tools.redaction import REDACTED

CHAT, USER = 5550101, 7770101
JUDGE_MODEL = "claude-judge-for-r5"
TOPIC = "Secrets stay out of the server log"
LLM_KEY = "canary-llm-key-5e1d77b0"  # not credential-shaped: only the by-value scrub can catch it
SECRETS = {
    "NEWSROOM_LLM_API_KEY": LLM_KEY,
    "ANTHROPIC_API_KEY": "sk-ant-canary-server-81c4aa",
    "NEWSROOM_TELEGRAM_BOT_TOKEN": "4242431:canary-bot-token-Wm3",
    "NEWSROOM_TELEGRAM_WEBHOOK_SECRET": "canary-hook-secret-2207-5c81f0e9ab34d7",
    "NEWSROOM_WEB_TOKEN": "canary-web-token-9a31-77c0e4b2d19f8a6",
    "LANGFUSE_SECRET_KEY": "sk-lf-canary-server-64de",
}
LANGFUSE_PUBLIC = "pk-lf-canary-public"
DB_PASSWORD = "canary/db+pw@9%31:x"  # needs quoting in a URL: the logs must hold neither form


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{quote(parts.username or 'postgres', safe='')}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


FRAGMENT = 12  # a run of this many characters of a secret counts as a leak (a cut-off repr, a split line)


def _forms(value: str) -> set[str]:
    """The secret, the encodings a log line could plausibly carry it in, and its fragments."""
    out = {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1],
           base64.b64encode(value.encode()).decode(), base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")}
    out |= {value[i:i + FRAGMENT] for i in range(len(value) - FRAGMENT + 1)}
    return {f for f in out if len(f) >= 8}


@pytest.fixture
def telegram():
    server = FakeTelegram(token=SECRETS["NEWSROOM_TELEGRAM_BOT_TOKEN"]).start()
    yield server
    server.stop()


async def test_no_secret_in_the_agent_server_log(db, llm, pg_url, telegram, session_dir):
    # The writer's and the judge's first calls for this post fail, the writer's with the key quoted
    # in the error body. (Per topic: on a shared machine a stray client can reach our server too.)
    failed: set[str] = set()

    def first_fails(model: str, fault: Fault, then):
        def handle(req):
            if TOPIC in req.prompt and model not in failed:
                failed.add(model)
                return fault
            return then(req)
        return handle

    leaky_error = f"upstream refused api_key={LLM_KEY} bot={SECRETS['NEWSROOM_TELEGRAM_BOT_TOKEN']}"
    llm.on_chat(first_fails(WRITER, Fault.server_error(message=leaky_error), draft_reply), model=WRITER)
    llm.on_chat(first_fails(JUDGE_MODEL, Fault.server_error(message="judge overloaded"), lambda req: PASSING),
                model=JUDGE_MODEL)
    llm.models.append(JUDGE_MODEL)
    log_path = session_dir / "agent-server-secrets.log"
    env = dict(os.environ, **SECRETS, DATABASE_URL=_with_password(pg_url, DB_PASSWORD),
               NEWSROOM_LLM_BASE_URL=llm.base_url, NEWSROOM_LLM_PROVIDER="llamacpp", NEWSROOM_LLM_MAX_ATTEMPTS="2",
               ANTHROPIC_BASE_URL=llm.anthropic_base_url, NEWSROOM_ANTHROPIC_JUDGE_MODEL=JUDGE_MODEL,
               NEWSROOM_LOG_LEVEL="DEBUG", LOG_LEVEL="DEBUG", LANGFUSE_PUBLIC_KEY=LANGFUSE_PUBLIC,
               # Its own in-memory run store: the shared .langgraph_api/ in the checkout holds other
               # servers' unfinished runs, which a server started there picks up and retries.
               LANGGRAPH_DISABLE_FILE_PERSISTENCE="true",
               LANGFUSE_HOST=f"http://127.0.0.1:{free_port()}", LANGFUSE_BASE_URL=f"http://127.0.0.1:{free_port()}",
               LANGFUSE_TIMEOUT="1", NEWSROOM_TELEGRAM_API_BASE_URL=telegram.url,
               NEWSROOM_TELEGRAM_ALLOWED_CHATS=str(CHAT), NEWSROOM_TELEGRAM_APPROVERS=str(USER))
    server = AgentServer(free_port(), env, log_path)
    started = time.monotonic()
    try:
        server.start()
        client = service_client(server.url)
        thread = await client.threads.create(metadata={"source": "api"})
        tid = thread["thread_id"]
        await client.runs.wait(tid, "newsroom", input={"topic": TOPIC, "requester": "dana", "source": "api"})
        state = await client.threads.get_state(tid)
        assert state["next"] == ["human_approval"], server.log_tail()
        # an invalid resume value: recorded, and the gate asks again
        await client.runs.wait(tid, "newsroom", command={"resume": {"action": "maybe"}})
        assert (await client.threads.get_state(tid))["next"] == ["human_approval"], server.log_tail()
        await client.runs.wait(tid, "newsroom", command={"resume": {"action": "approve", "reviewer": "dana"}})
        final = await client.threads.get_state(tid)
        assert final["values"]["outcome"] == "published", server.log_tail()

        # A client's malformed input that holds a secret: the run fails and the server logs why, with a
        # traceback. pydantic quotes the input whole when it is short, and cut in the middle when not.
        for requester in ({"k": LLM_KEY}, {"name": "eve", "api_key": LLM_KEY}):
            bad = await client.threads.create()
            failed_run = await client.runs.wait(bad["thread_id"], "newsroom", raise_error=False, input={
                "topic": TOPIC, "requester": requester, "source": "api"})
            assert "ValidationError" in json.dumps(failed_run), failed_run

        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            hook = "/newsroom/telegram/webhook"
            update = telegram.message_update(CHAT, USER, "/help")
            wrong = await http.post(hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "not-the-secret"})
            assert wrong.status_code == 403
            right = await http.post(hook, json=update, headers={
                "X-Telegram-Bot-Api-Secret-Token": SECRETS["NEWSROOM_TELEGRAM_WEBHOOK_SECRET"]})
            assert right.status_code == 200, right.text
            await telegram.wait_for(lambda: telegram.chat_messages(CHAT), what="the bot's /help answer")
            leaky = await http.get("/newsroom/ui", params={"token": SECRETS["NEWSROOM_WEB_TOKEN"]})
            assert leaky.status_code == 401
            refused = await http.get("/newsroom/ui", headers={"Authorization": "Bearer wrong-token-123456"})
            assert refused.status_code in (401, 403)
            health = await http.get("/newsroom/health", params={"deep": "1"},
                                    headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
            assert health.status_code == 200, health.text
            # a credential in the path prefix (Studio's base URL) is moved to a header before any log
            assert (await http.get(f"/k/{VIEWER_TOKEN}/threads/{tid}/state")).status_code == 200
    finally:
        llm.models.remove(JUDGE_MODEL)
        server.stop()
    elapsed = time.monotonic() - started

    # The run really went through the paths that hold the secrets.
    assert any(r.api == "openai" and r.headers.get("authorization") == f"Bearer {LLM_KEY}" for r in llm.requests)
    assert any(r.api == "anthropic" and SECRETS["ANTHROPIC_API_KEY"] in (r.headers.get("x-api-key", "")
                                                                         + r.headers.get("authorization", ""))
               for r in llm.requests), "the judge did not use the Anthropic route"
    assert telegram.calls_of("sendMessage")
    assert failed == {WRITER, JUDGE_MODEL}
    outcomes = [(c["role"], c["outcome"]) for c in await posts.llm_calls_for(db, tid)]
    assert ("judge", "error") in outcomes and ("judge", "ok") in outcomes, outcomes  # retried after the 500
    events = [e["kind"] for e in await posts.list_events(db, tid)]
    assert "invalid_resume" in events and "human_decision" in events

    assert len([o for o in outcomes if o[1] == "error"]) >= 2  # the writer's 500 too
    raw = log_path.read_text(errors="replace")
    log = re.sub(r"\x1b\[[0-9;]*m", "", raw)  # the console renderer's colours
    # The log shows what happened, at DEBUG, and where secrets were met and scrubbed.
    assert "[debug" in log and "Background run succeeded" in log and tid in log, log[-3000:]
    assert "/threads/{thread_id}/runs/wait" in log and "/newsroom/telegram/webhook" in log, log[-3000:]
    assert '"HTTP/1.1 500 Internal Server Error"' in log  # the failed LLM calls
    assert f"{telegram.url}/bot{REDACTED}" in log  # PTB's Bot API URL, token scrubbed
    assert f"query_string='token={REDACTED}'" in log  # the access log's query string
    searched = {name: _forms(value) for name, value in {**SECRETS, "DB_PASSWORD": DB_PASSWORD,
                                                        "SERVICE_TOKEN": SERVICE_TOKEN,
                                                        "VIEWER_TOKEN": VIEWER_TOKEN}.items()}
    basic = base64.b64encode(f"{LANGFUSE_PUBLIC}:{SECRETS['LANGFUSE_SECRET_KEY']}".encode()).decode()
    searched["LANGFUSE_BASIC_AUTH"] = {basic}
    leaked = {name: sorted(f for f in forms if f in log or f in raw) for name, forms in searched.items()}
    assert "ValidationError" in log and "Traceback" in log  # the failed runs' tracebacks were searched too
    leaked = {name: found for name, found in leaked.items() if found}
    assert leaked == {}, f"secrets in the Agent Server log ({log_path}): {leaked}"
    print(f"\nAgent Server log: {len(log)} chars, {log.count(chr(10))} lines, "
          f"{sum(len(f) for f in searched.values())} forms of {len(searched)} secrets searched, none found; "
          f"{elapsed:.1f}s")
