"""The same flow through the real Agent Server (`newsroom serve` = langgraph dev on our langgraph.json),
driven with langgraph_sdk: checkpoints land in our PostgreSQL, the interrupt is visible, a command resumes it."""
from __future__ import annotations

from pathlib import Path

from storage import approvals, posts
from tests.server_fixtures import STUDIO_APPROVER_TOKEN, VIEWER_TOKEN, approver_client, service_client


async def test_sdk_run_stops_at_the_gate_and_resumes_to_publish(db, llm, agent_server):
    client = service_client(agent_server.url)
    thread = await client.threads.create(metadata={"source": "api", "chat_id": 42})
    tid = thread["thread_id"]
    await client.runs.wait(tid, "newsroom", input={"topic": "How GQA shrinks the KV cache", "requester": "dana",
                                                   "source": "api"})
    state = await client.threads.get_state(tid)
    assert state["next"] == ["human_approval"], agent_server.log_tail()
    interrupts = [i for t in state["tasks"] for i in t["interrupts"]]
    assert len(interrupts) == 1
    payload = interrupts[0]["value"]
    assert payload["draft"]["title"] == "GQA and the KV cache" and payload["scores"]["calibration"] == 4
    # the server's checkpoints are in OUR database
    rows = await db.fetch("SELECT count(*) AS n FROM checkpoints WHERE thread_id = %(t)s", {"t": tid})
    assert rows[0]["n"] >= 5
    post = await posts.get_post(db, tid)
    assert post["status"] == "awaiting_approval" and post["requester"] == "dana" and post["source"] == "api"

    # As Studio does it: a plain resume value, sent with an approver's credential. The server claims
    # the gate in the approval ledger for that approver (the typed reviewer name is not trusted).
    studio = approver_client(agent_server.url, STUDIO_APPROVER_TOKEN)
    await studio.runs.wait(tid, "newsroom", command={"resume": {"action": "approve", "reviewer": "someone else"}})
    final = await client.threads.get_state(tid)
    assert final["next"] == [] and final["values"]["outcome"] == "published", agent_server.log_tail()
    location = Path(final["values"]["publication"]["location"])
    assert location.exists() and "GQA and the KV cache" in location.read_text()
    assert (await posts.get_post(db, tid))["status"] == "published"
    decisions = [e for e in await posts.list_events(db, tid) if e["kind"] == "human_decision"]
    assert [d["actor"] for d in decisions] == ["studio-user"]
    (gate,) = await approvals.gates_for_thread(db, tid)
    assert (gate.decision, gate.decided_by, gate.decided_via) == ("approve", "studio-user", "studio-or-sdk")
    assert gate.resumed_at is not None


async def test_health_route_reports_llm_endpoints_and_breakers(agent_server):
    import httpx

    async with httpx.AsyncClient() as http:
        liveness = await http.get(f"{agent_server.url}/newsroom/health", timeout=30)
        assert liveness.status_code == 200 and liveness.json() == {"ok": True}  # no credential, nothing internal
        anonymous = await http.get(f"{agent_server.url}/newsroom/health", params={"deep": "1"}, timeout=30)
        assert anonymous.status_code == 401 and "llm" not in anonymous.text
        r = await http.get(f"{agent_server.url}/newsroom/health", params={"deep": "1"}, timeout=30,
                           headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True
    (endpoint,) = body["llm"].values()
    assert endpoint["reachable"] is True and "newsroom-writer" in endpoint["models"]
    assert endpoint["breaker"]["state"] == "closed"
