"""The human's desk from every channel, across the real boundaries: a real `newsroom serve` (langgraph
dev on our langgraph.json, scripted LLM, embedded PostgreSQL) driven with langgraph_sdk as Studio or
the SDK would (our resume shape and the Agent Inbox one), the web page over HTTP, the Telegram bot
(PTB) against the fake Bot API, and the `newsroom edit` command with a real $EDITOR process."""
from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.runner import current, start_post
from storage import approvals, posts
from tests.approval_fixtures import APPROVER, GROUP_CHAT, NOT_APPROVER, WEB_TOKEN, polling_bot
from tests.server_fixtures import APPROVER as APPROVER_NAME
from tests.server_fixtures import VIEWER_TOKEN, approver_client, service_client

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


async def _at_gate(url: str, topic: str) -> str:
    client = service_client(url)
    thread = await client.threads.create(metadata={"source": "human-desk-test"})
    await client.runs.wait(thread["thread_id"], "newsroom", input={"topic": topic, "requester": "hd", "source": "api"})
    assert (await client.threads.get_state(thread["thread_id"]))["next"] == ["human_approval"]
    return thread["thread_id"]


def _waiting(state: dict) -> dict:
    return state["tasks"][0]["interrupts"][0]["value"]


async def _wait_status(db, tid: str, status: str, timeout: float = 40) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        post = await posts.get_post(db, tid)
        if post and post["status"] == status:
            return post
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"post {tid} is {post and post['status']}, not {status}")
        await asyncio.sleep(0.1)


# --- Agent Server: Studio / SDK resumes -------------------------------------------------------------------

async def test_sdk_edit_goes_through_the_ledger_as_the_caller_then_an_inbox_accept_publishes_it(
        approval_server, approval_script, db):
    url = approval_server.url
    tid = await _at_gate(url, "Edited from the SDK")
    service = service_client(url)
    shown = _waiting(await service.threads.get_state(tid))
    # The interrupt speaks the Agent Inbox shape too (agent-inbox reads action_request + config).
    assert shown["config"]["allow_edit"] is True and shown["action_request"]["action"] == "publish_post"
    markdown = shown["action_request"]["args"]["draft"]
    assert markdown.startswith("# GQA and the KV cache\n\n")
    edited = markdown + "\n\nAdded from the SDK by an approver."
    # A viewer may not edit; an edit over the limit is refused before anything is claimed.
    with pytest.raises(httpx.HTTPStatusError) as viewer:
        from langgraph_sdk import get_client

        await get_client(url=url, api_key=VIEWER_TOKEN).runs.wait(
            tid, "newsroom", command={"resume": {"action": "edit", "draft": edited}})
    assert viewer.value.response.status_code == 403
    approver = approver_client(url)
    with pytest.raises(httpx.HTTPStatusError) as too_long:
        await approver.runs.wait(tid, "newsroom", command={"resume": {"action": "edit", "draft": "# T\n\n" + "z" * 20001}})
    assert too_long.value.response.status_code == 422 and "limit is 20000" in too_long.value.response.text
    assert all(not g.decided for g in await approvals.gates_for_thread(db, tid))

    await approver.runs.wait(tid, "newsroom", command={"resume": {"action": "edit", "draft": edited,
                                                                  "reviewer": "Somebody Else"}})
    state = await service.threads.get_state(tid)
    assert state["next"] == ["human_approval"]
    v2 = _waiting(state)["draft"]
    assert v2["version"] == 2 and v2["edited_by"] == APPROVER_NAME  # the authenticated approver, not a typed name
    assert v2["body"].endswith("Added from the SDK by an approver.")
    assert _waiting(state)["citation_check"]["draft_version"] == 2
    gate = next(g for g in await approvals.gates_for_thread(db, tid) if g.decision == "edit")
    assert (gate.decided_by, gate.decided_via, gate.edited_draft) == (APPROVER_NAME, "studio-or-sdk", edited)
    # An "edit" that changes nothing in v2 is refused (approve it instead), nothing claimed.
    with pytest.raises(httpx.HTTPStatusError) as same:
        await approver.runs.wait(tid, "newsroom", command={"resume": {"action": "edit", "draft": edited}})
    assert same.value.response.status_code == 422 and "changes nothing" in same.value.response.text

    # Agent Inbox's answer shape: a one-item list of HumanResponse; accept approves the edited version.
    await approver.runs.wait(tid, "newsroom", command={"resume": [{"type": "accept", "args": None}]})
    post = await _wait_status(db, tid, "published")
    pub = (await posts.publications_for(db, tid))[0]
    assert "Added from the SDK by an approver." in Path(pub["location"]).with_suffix(".md").read_text()
    assert [e["detail"]["decision"] for e in await posts.list_events(db, tid) if e["kind"] == "human_decision"] == \
        ["edit", "approve"]
    assert post["status"] == "published"


async def test_sdk_approve_with_edits_and_inbox_edit_and_response(approval_server, approval_script, db):
    url = approval_server.url
    approver = approver_client(url)
    tid = await _at_gate(url, "Approved with edits from the SDK")
    await approver.runs.wait(tid, "newsroom", command={"resume": {
        "action": "approve_with_edits", "draft": "# Approved with edits\n\nGrouped-query attention shares KV heads."}})
    await _wait_status(db, tid, "published")
    assert (await posts.publications_for(db, tid))[0]["title"] == "Approved with edits"

    tid2 = await _at_gate(url, "Edited in the inbox")
    md = _waiting(await service_client(url).threads.get_state(tid2))["action_request"]["args"]["draft"]
    await approver.runs.wait(tid2, "newsroom", command={"resume": [
        {"type": "edit", "args": {"action": "publish_post", "args": {"draft": md + "\n\nInbox edit."}}}]})
    v2 = _waiting(await service_client(url).threads.get_state(tid2))["draft"]
    assert v2["version"] == 2 and v2["body"].endswith("Inbox edit.")
    await approver.runs.wait(tid2, "newsroom", command={"resume": [{"type": "response", "args": "shorter please"}]})
    state = await service_client(url).threads.get_state(tid2)
    assert _waiting(state)["draft"]["version"] == 3  # the Writer revised the human's version
    decided = [e["detail"] for e in await posts.list_events(db, tid2) if e["kind"] == "human_decision"]
    assert [(d["decision"], d["feedback"]) for d in decided] == [("edit", None), ("revise", "shorter please")]
    await approver.runs.wait(tid2, "newsroom", command={"resume": [{"type": "ignore", "args": None}]})
    await _wait_status(db, tid2, "rejected")


# --- the web page ---------------------------------------------------------------------------------------------

async def test_web_textarea_edit_then_approve_with_edits(approval_server, approval_script, db):
    url = approval_server.url
    tid = await _at_gate(url, "Edited on the web page")
    base, auth = f"{url}/newsroom/ui", {"Authorization": f"Bearer {WEB_TOKEN}"}
    async with httpx.AsyncClient(timeout=60, follow_redirects=False) as http:
        page = await http.get(f"{base}/runs/{tid}", headers=auth)
        assert "id=edit-draft" in page.text and "id=approve-with-edits" in page.text
        area = re.search(r"<textarea name=draft id=edit-draft[^>]*>(.*?)</textarea>", page.text, re.DOTALL).group(1)
        assert area.startswith("# GQA and the KV cache")
        gate_id = page.text.split("name=gate_id value='")[1].split("'")[0]
        edited = "# Edited on the web\n\nGrouped-query attention shares key/value heads <b>between</b> query heads."
        cross = await http.post(f"{base}/runs/{tid}/decide", data={"action": "edit", "gate_id": gate_id, "draft": edited},
                                headers={**auth, "Origin": "https://evil.example"})
        assert cross.status_code == 403
        long = await http.post(f"{base}/runs/{tid}/decide", headers=auth,
                               data={"action": "edit", "gate_id": gate_id, "draft": "# T\n\n" + "w" * 20001})
        flash = (await http.get(url + long.headers["location"], headers=auth)).text
        assert "limit is 20000" in flash and all(not g.decided for g in await approvals.gates_for_thread(db, tid))
        done = await http.post(f"{base}/runs/{tid}/decide", headers=auth,
                               data={"action": "edit", "gate_id": gate_id, "draft": edited, "reviewer": "wendy"})
        assert done.status_code == 303
        assert "Your edit is the new version" in (await http.get(url + done.headers["location"], headers=auth)).text
        for _ in range(200):
            page = await http.get(f"{base}/runs/{tid}", headers=auth)
            if "Draft v2" in page.text and "id=edit-draft" in page.text:
                break
            await asyncio.sleep(0.1)
        assert "edited by wendy (web)" in page.text
        assert "&lt;b&gt;between&lt;/b&gt;" in page.text  # the human's text is escaped like any draft
        gate2 = page.text.split("name=gate_id value='")[1].split("'")[0]
        assert gate2 != gate_id
        final = edited + "\n\nOne more line before publishing."
        done = await http.post(f"{base}/runs/{tid}/decide", headers=auth,
                               data={"action": "approve_with_edits", "gate_id": gate2, "draft": final, "reviewer": "wendy"})
        assert "Approved with your edits" in (await http.get(url + done.headers["location"], headers=auth)).text
    await _wait_status(db, tid, "published")
    text = Path((await posts.publications_for(db, tid))[0]["location"]).with_suffix(".md").read_text()
    assert "One more line before publishing." in text
    edits = [e for e in await posts.list_events(db, tid) if e["kind"] == "draft_edited"]
    assert [(e["actor"], e["detail"]["version"]) for e in edits] == [("wendy (web)", 2), ("wendy (web)", 3)]


# --- Telegram ---------------------------------------------------------------------------------------------------

THREAD_RE = re.compile(r"thread <code>([0-9a-f-]{36})</code>")


def _buttons(msg: dict) -> dict[str, str]:
    rows = (msg.get("reply_markup") or {}).get("inline_keyboard") or []
    return {b["text"].split()[-1].lower(): b["callback_data"] for row in rows for b in row}


async def _tg_gate(fake, tid: str, version: int) -> dict:
    def _find():
        return next((m for m in fake.chat_messages(GROUP_CHAT) if tid in (m.get("text") or "")
                     and f"Draft v{version} ready" in m["text"] and _buttons(m)), None)
    return await fake.wait_for(_find, timeout=40, what=f"the approval message of v{version}")


async def _tg_document_prompt(fake, tid: str, version: int) -> dict:
    return await fake.wait_for(lambda: next((m for m in fake.chat_messages(GROUP_CHAT) if m.get("document")
                                             and m["document"]["file_name"] == f"draft-v{version}.md"
                                             and tid[-8:] in (m.get("caption") or "")), None),
                               what=f"the draft v{version} as a document")


async def test_telegram_edit_with_a_document_then_approve_with_edits_by_text(
        approval_server, fake_telegram, approval_script, db):
    fake = fake_telegram
    async with polling_bot(fake.url, approval_server.url):
        fake.send_text(GROUP_CHAT, APPROVER, "/post Edited in Telegram")
        progress = await fake.wait_for(lambda: next((m for m in fake.chat_messages(GROUP_CHAT)
                                                     if "Edited in Telegram" in (m.get("text") or "")
                                                     and THREAD_RE.search(m["text"])), None), what="progress")
        tid = THREAD_RE.search(progress["text"]).group(1)
        gate = await _tg_gate(fake, tid, 1)
        assert {"approve", "revise", "reject", "edit", "edits"} <= set(_buttons(gate))
        fake.press(GROUP_CHAT, APPROVER, gate, _buttons(gate)["edit"])
        prompt = await _tg_document_prompt(fake, tid, 1)
        assert prompt["_reply_markup"]["force_reply"] is True
        original = fake.documents[prompt["document"]["file_id"]].decode()
        assert original.startswith("# GQA and the KV cache\n\n")
        # Not the approver who was asked: refused; a file that is not Markdown/text: refused.
        fake.send_document(GROUP_CHAT, NOT_APPROVER, "draft.md", b"# Hijack\n\nno", reply_to=prompt)
        await fake.wait_for(lambda: any((m.get("text") or "").startswith("⛔ Only approvers")
                                        for m in fake.chat_messages(GROUP_CHAT)), what="the refusal")
        fake.send_document(GROUP_CHAT, APPROVER, "draft.exe", b"MZ", reply_to=prompt)
        await fake.wait_for(lambda: any("Send the edited draft as a .md" in (m.get("text") or "")
                                        for m in fake.chat_messages(GROUP_CHAT)), what="the file-type refusal")
        edited = original.rstrip() + "\n\nEdited in Telegram as a document.\n"
        fake.send_document(GROUP_CHAT, APPROVER, "draft-v1.md", edited.encode(), reply_to=prompt)
        gate2 = await _tg_gate(fake, tid, 2)
        assert "edited by @user501 (telegram 501)" in gate2["text"]
        assert any("Edited in Telegram as a document." in (m.get("text") or "") for m in fake.chat_messages(GROUP_CHAT))
        fake.press(GROUP_CHAT, APPROVER, gate2, _buttons(gate2)["edits"])
        prompt2 = await _tg_document_prompt(fake, tid, 2)
        fake.send_text(GROUP_CHAT, APPROVER, "# Approved in Telegram\n\nGrouped-query attention shares KV heads.",
                       reply_to=prompt2)
        await _wait_status(db, tid, "published")
        await fake.wait_for(lambda: any((m.get("text") or "").startswith("📣 Published “Approved in Telegram”")
                                        for m in fake.chat_messages(GROUP_CHAT)), what="the published message")
    decided = [e for e in await posts.list_events(db, tid) if e["kind"] == "human_decision"]
    assert [(e["actor"], e["detail"]["decision"]) for e in decided] == [
        ("@user501 (telegram 501)", "edit"), ("@user501 (telegram 501)", "approve_with_edits")]
    assert len(await posts.publications_for(db, tid)) == 1


async def test_telegram_revise_reply_naming_a_section(approval_server, fake_telegram, approval_script, db):
    from tests.engine_fixtures import WRITER

    def writer(req):
        if req.wants_json:
            return {"title": "GQA and the KV cache", "sections": ["Sharing", "Savings"]}
        if any(" section>>>" in str(m.get("content")) for m in req.messages):
            return "Eight times smaller for Llama 3.1 8B."
        return "# GQA and the KV cache\n\nIntro.\n\n## Sharing\n\nHeads share KV.\n\n## Savings\n\nSmaller cache."

    approval_script.reset()
    approval_script.on_chat(writer, model=WRITER)
    from tests.engine_fixtures import JUDGE, PASSING

    approval_script.on_chat(lambda req: PASSING, model=JUDGE)
    fake = fake_telegram
    async with polling_bot(fake.url, approval_server.url):
        fake.send_text(GROUP_CHAT, APPROVER, "/post Section revise in Telegram")
        progress = await fake.wait_for(lambda: next((m for m in fake.chat_messages(GROUP_CHAT)
                                                     if "Section revise in Telegram" in (m.get("text") or "")
                                                     and THREAD_RE.search(m["text"])), None), what="progress")
        tid = THREAD_RE.search(progress["text"]).group(1)
        gate = await _tg_gate(fake, tid, 1)
        fake.press(GROUP_CHAT, APPROVER, gate, _buttons(gate)["revise"])
        question = await fake.wait_for(lambda: next((m for m in fake.chat_messages(GROUP_CHAT)
                                                     if (m.get("text") or "").startswith("✏️ What should the writer")
                                                     and tid[-8:] in m["text"]), None), what="the question")
        fake.send_text(GROUP_CHAT, APPROVER, "section: Savings\ngive the factor", reply_to=question)
        await _tg_gate(fake, tid, 2)
    values = (await service_client(approval_server.url).threads.get_state(tid))["values"]
    v1, v2 = values["drafts"][0], values["drafts"][1]
    assert v2["section"] == "Savings" and v2["body"].startswith("Intro.\n\n## Sharing\n\nHeads share KV.\n\n## Savings")
    assert v2["body"].endswith("Eight times smaller for Llama 3.1 8B.") and "Smaller cache." in v1["body"]
    decided = [e["detail"] for e in await posts.list_events(db, tid) if e["kind"] == "human_decision"]
    assert [(d["decision"], d["feedback"], d["section"]) for d in decided] == [("revise", "give the factor", "Savings")]


# --- the CLI -------------------------------------------------------------------------------------------------------

def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


async def test_newsroom_edit_opens_the_editor_and_takes_a_file(db, pg_url, llm, tmp_path):  # noqa: F811
    snap = await start_post("Edited with newsroom edit")
    tid = snap.thread_id
    editor = tmp_path / "fake-editor"
    # A real $EDITOR process: appends a line to the file it is given (as a person would, then saves).
    editor.write_text("#!/bin/sh\nprintf '\\nAdded in the editor.\\n' >> \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, DATABASE_URL=pg_url, EDITOR=str(editor), VISUAL=str(editor), USER="edna")
    out = _cli(env, "edit", tid[-8:])
    assert out.returncode == 0, out.stderr
    assert "draft v2: GQA and the KV cache  (edited by edna)" in out.stdout and "waiting for approval" in out.stdout
    after = await current(tid)
    assert after.interrupt["draft"]["body"].endswith("Added in the editor.")
    # --file with --approve: published in the same step (the check passes: nothing is cited).
    final = tmp_path / "final.md"
    final.write_text("# Final from a file\n\nGrouped-query attention shares KV heads.\n")
    stale = _cli(env, "edit", tid, "--file", str(final), "--version", "1")
    assert stale.returncode == 1 and "waits at draft v2, not v1" in stale.stderr
    out = _cli(env, "edit", tid, "--file", str(final), "--approve", "--reviewer", "ed")
    assert out.returncode == 0, out.stderr
    assert "published to" in out.stdout
    assert (await posts.publications_for(db, tid))[0]["title"] == "Final from a file"
    again = _cli(env, "edit", tid, "--file", str(final))
    assert again.returncode == 1 and "not waiting for approval" in again.stderr
