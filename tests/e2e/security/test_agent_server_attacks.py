"""Hostile suite, Agent Server: a real `newsroom serve` (approval_server: langgraph dev on our
langgraph.json, the scripted LLM, our PostgreSQL), attacked over HTTP the way issue 12's review did.
Every attack must be refused: nothing approved, published or read without the right identity, from
any origin; no resume outside the approvals ledger; bodies bounded before they are read."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client

from storage import approvals, posts
from tests.approval_fixtures import WEBHOOK_SECRET
from tests.server_fixtures import (
    SERVICE_TOKEN,
    STUDIO_APPROVER_TOKEN,
    VIEWER_TOKEN,
    approver_client,
    service_client,
)

pytestmark = pytest.mark.slow

EVIL = "https://evil.example"
STUDIO = "https://smith.langchain.com"


async def _at_gate(url: str, topic: str) -> str:
    client = service_client(url)
    thread = await client.threads.create(metadata={"source": "security-test"})
    await client.runs.wait(thread["thread_id"], "newsroom", input={"topic": topic, "requester": "sec", "source": "api"})
    assert (await client.threads.get_state(thread["thread_id"]))["next"] == ["human_approval"]
    return thread["thread_id"]


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_every_route_needs_a_credential_and_studio_scheme_gets_no_pass(approval_server, approval_script):
    tid = await _at_gate(approval_server.url, "Anonymous reads nothing")
    u = approval_server.url
    async with httpx.AsyncClient(base_url=u, timeout=30) as http:
        anonymous = [
            await http.post("/threads/search", json={}),
            await http.get(f"/threads/{tid}/state"),
            await http.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "newsroom",
                                                               "command": {"resume": {"action": "approve"}}}),
            await http.post("/assistants/search", json={}),
            await http.get("/docs"), await http.get("/openapi.json"), await http.get("/info"),
            await http.get("/metrics"), await http.get("/"), await http.post("/mcp", json={}),
            await http.get("/newsroom/health", params={"deep": "1"}),
            # the header that routed every request to a no-op Studio backend
            await http.post("/threads/search", json={}, headers={"x-auth-scheme": "langsmith"}),
            await http.get(f"/threads/{tid}/state", headers={"x-auth-scheme": "langsmith", "x-api-key": "guess"}),
            await http.post("/threads/search", json={}, headers=_bearer("not-a-token-" + "x" * 30)),
        ]
        assert [r.status_code for r in anonymous] == [401] * len(anonymous), [(r.request.url, r.text) for r in anonymous]
        assert all(tid not in r.text for r in anonymous)
        assert (await http.get("/ok")).status_code == 200  # the liveness probe
        viewer = await http.get(f"/threads/{tid}/state", headers=_bearer(VIEWER_TOKEN))
        assert viewer.status_code == 200 and "GQA and the KV cache" in viewer.text
        # a credential in the path prefix, for clients that only take a base URL (Studio's ?baseUrl=)
        prefixed = await http.get(f"/k/{VIEWER_TOKEN}/threads/{tid}/state")
        assert prefixed.status_code == 200 and "GQA and the KV cache" in prefixed.text
        assert (await http.get(f"/k/wrong-{VIEWER_TOKEN}/threads/{tid}/state")).status_code == 401


async def test_raw_resumes_are_refused_or_go_through_the_ledger(approval_server, approval_script, db):
    tid = await _at_gate(approval_server.url, "A forged approval")
    url = approval_server.url
    viewer = get_client(url=url, api_key=VIEWER_TOKEN)
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await viewer.runs.wait(tid, "newsroom", command={"resume": {"action": "approve", "reviewer": "Chief Editor"}})
    assert refused.value.response.status_code == 403
    # An approver with a made-up gate token: passed to the graph, which refuses it and records why.
    forger = approver_client(url)
    await forger.runs.wait(tid, "newsroom", command={"resume": {"action": "approve", "gate_token": "forged" * 6}})
    state = await service_client(url).threads.get_state(tid)
    assert state["next"] == ["human_approval"] and state["values"]["outcome"] == "pending"
    invalid = [e for e in await posts.list_events(db, tid) if e["kind"] == "invalid_resume"]
    assert invalid and "not issued by the approvals ledger" in invalid[-1]["detail"]["error"]
    assert "forged" not in json.dumps(invalid[-1]["detail"])  # the token is not kept in the audit log
    # The same approver, plainly: claimed in the ledger for them (not for a typed name), then applied.
    await forger.runs.wait(tid, "newsroom", command={"resume": {"action": "reject", "reason": "sec test",
                                                                "reviewer": "Chief Editor (web)"}})
    gate = next(g for g in await approvals.gates_for_thread(db, tid) if g.decision == "reject")
    assert (gate.decided_by, gate.decided_via) == ("dana", "studio-or-sdk") and gate.resumed_at is not None
    decided = [e for e in await posts.list_events(db, tid) if e["kind"] == "human_decision"]
    assert [d["actor"] for d in decided] == ["dana"]
    assert (await posts.get_post(db, tid))["status"] == "rejected"
    # A second approver afterwards: the gate is decided, nothing resumes.
    with pytest.raises(httpx.HTTPStatusError) as late:
        await approver_client(url, STUDIO_APPROVER_TOKEN).runs.wait(tid, "newsroom",
                                                                     command={"resume": {"action": "approve"}})
    assert late.value.response.status_code == 409
    assert (await posts.publications_for(db, tid)) == []


async def test_a_state_edit_cannot_publish_an_unreviewed_draft(approval_server, approval_script, db, session_dir):
    tid = await _at_gate(approval_server.url, "A draft nobody saw")
    url = approval_server.url
    forged_draft = {"version": 99, "title": "Injected", "body": "Nobody reviewed this text.", "prompt": "none",
                    "model": "none", "reason": "first"}
    forged_decision = {"decision": "approve", "reviewer": "Chief Editor", "draft_version": 99, "payload_hash": "x"}
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await get_client(url=url, api_key=VIEWER_TOKEN).threads.update_state(
            tid, {"drafts": [forged_draft], "decisions": [forged_decision]}, as_node="human_approval")
    assert refused.value.response.status_code == 403
    # Even an approver's edit (a stolen approver token) publishes nothing: the Publisher asks the ledger.
    approver = approver_client(url)
    await approver.threads.update_state(tid, {"drafts": [forged_draft], "decisions": [forged_decision]},
                                        as_node="human_approval")
    await approver.runs.wait(tid, "newsroom", input=None)
    final = (await service_client(url).threads.get_state(tid))["values"]
    assert final["outcome"] == "failed" and "publish refused" in final["error"]
    assert await posts.publications_for(db, tid) == []
    assert [e for e in await posts.list_events(db, tid) if e["kind"] == "publish_refused"]
    site = Path(approval_server.env["NEWSROOM_SITE_DIR"]) / "posts"
    assert not any("Nobody reviewed" in p.read_text() for p in site.glob("*.md"))
    # A run's command may not write state past the gate either.
    other = await _at_gate(url, "A command that jumps")
    with pytest.raises(httpx.HTTPStatusError) as jump:
        await approver.runs.wait(other, "newsroom", command={"update": {"outcome": "pending"}, "goto": "publisher"})
    assert jump.value.response.status_code == 403


async def test_run_overrides_are_bounded_and_policy_is_fixed(approval_server, approval_script, db):
    url = approval_server.url
    approver = approver_client(url)
    thread = await approver.threads.create()
    with pytest.raises(httpx.HTTPStatusError) as huge:
        await approver.runs.wait(thread["thread_id"], "newsroom", input={"topic": "Bounds", "source": "api"},
                                 config={"configurable": {"writer_max_tokens": 10 ** 9}})
    assert huge.value.response.status_code == 422 and "writer_max_tokens" in huge.value.response.text
    tid = await _at_gate(url, "A policy switch")  # started with the environment's policy (human)
    with pytest.raises(httpx.HTTPStatusError) as switch:
        await approver.runs.wait(tid, "newsroom", input={"topic": "A policy switch", "source": "api"},
                                 config={"configurable": {"approval_policy": "escalations_only"}})
    assert switch.value.response.status_code == 403 and "fixed when it started" in switch.value.response.text
    with pytest.raises(httpx.HTTPStatusError) as viewer:
        await get_client(url=url, api_key=VIEWER_TOKEN).threads.create()
    assert viewer.value.response.status_code == 403
    with pytest.raises(httpx.HTTPStatusError) as assistant:
        await approver.assistants.create("newsroom", config={"configurable": {"approval_policy": "escalations_only"}})
    assert assistant.value.response.status_code == 403
    assert await posts.publications_for(db, tid) == []


async def test_other_origins_hosts_and_private_network_are_refused(approval_server):
    u = approval_server.url
    async with httpx.AsyncClient(base_url=u, timeout=30) as http:
        preflight = await http.options("/threads/search", headers={
            "Origin": EVIL, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
            "Access-Control-Request-Private-Network": "true"})
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-private-network" not in preflight.headers
        # a "simple" request a page can send without a preflight, with a stolen token even
        simple = await http.post("/threads/search", content="{}", headers={
            "Origin": EVIL, "Content-Type": "text/plain", **_bearer(SERVICE_TOKEN)})
        assert simple.status_code == 403
        studio = await http.options("/threads/search", headers={
            "Origin": STUDIO, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert studio.headers.get("access-control-allow-origin") == STUDIO
        assert studio.headers.get("access-control-allow-origin") != "*"
        # DNS rebinding: the page's own name in Host
        rebound = await http.post("/threads/search", json={}, headers={"Host": "evil.example", **_bearer(VIEWER_TOKEN)})
        assert rebound.status_code == 400
        web = await http.get("/newsroom/ui/login", headers={"Host": "evil.example:80"})
        assert web.status_code == 400


async def test_bodies_are_bounded_before_they_are_read(approval_server):
    u = approval_server.url
    async with httpx.AsyncClient(base_url=u, timeout=60) as http:
        # Content-Length over the limit: refused at once (the body is never sent in full)
        big = await http.post("/newsroom/telegram/webhook", content=b"x" * (2 * 1024 * 1024),
                              headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET})
        assert big.status_code == 413
        login = await http.post("/newsroom/ui/login", content=b"token=" + b"a" * 8000,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert login.status_code == 413
        api = await http.post("/threads/search", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                              headers={**_bearer(VIEWER_TOKEN), "Content-Type": "application/json"})
        assert api.status_code == 413

        async def chunks():
            for _ in range(40):
                yield b"y" * 65536
        # no Content-Length (chunked): cut off at the limit
        streamed = await http.post("/newsroom/telegram/webhook", content=chunks(),
                                   headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET})
        assert streamed.status_code == 413
        # a stranger's webhook body is not read at all: wrong secret is 403 whatever follows
        stranger = await http.post("/newsroom/telegram/webhook", content=b"{}",
                                   headers={"X-Telegram-Bot-Api-Secret-Token": "guess"})
        assert stranger.status_code == 403


async def test_the_service_identity_still_drives_everything(approval_server, approval_script, db):
    # The same server answers its own channels: a decision through service.decisions.decide.
    from service.decisions import decide, gate_for, pending_interrupt

    tid = await _at_gate(approval_server.url, "The service approves through the ledger")
    client = service_client(approval_server.url)
    gate = await gate_for(db, await pending_interrupt(client, tid))
    result = await decide(client, db, gate.gate_id, action="approve", text=None, reviewer="ops (test)", via="test")
    assert result.resumed
    await client.runs.join(tid, result.run_id)
    for _ in range(100):
        if (await posts.get_post(db, tid))["status"] == "published":
            break
        await asyncio.sleep(0.1)
    assert (await posts.get_post(db, tid))["status"] == "published"
    assert len(await posts.publications_for(db, tid)) == 1
