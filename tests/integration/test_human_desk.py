"""The human's desk, in-process (embedded PostgreSQL, the scripted LLM over real HTTP): edit in place,
approve_with_edits, section-level revise, the HITL / Agent Inbox shape of the gate and its answers.
The channels (Agent Server resume, web page, CLI, Telegram) are tested in tests/e2e/test_human_desk_channels.py."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from agents import supervisor, writer
from agents.models import Draft
from service.decisions import AnswerRefused
from service.runner import resume, start_post
from storage import approvals, posts, training
from tests.engine_fixtures import JUDGE, PASSING, WRITER

TWO_SECTIONS = ("# GQA and the KV cache\n\nGrouped-query attention shares key/value heads.\n\n"
                "## What GQA shares\n\nSeveral query heads read one key/value head.\n\n"
                "## What it saves\n\nThe cache shrinks by the group size.\n\n"
                "## Caveats\n\nQuality can drop a little.")


async def _events(db, tid, kind):
    return [e for e in await posts.list_events(db, tid) if e["kind"] == kind]


def _markdown(snap) -> str:
    d = snap.interrupt["draft"]
    return f"# {d['title']}\n\n{d['body']}"


# --- pure parts ----------------------------------------------------------------------------------------

def test_sections_and_replacing_one_leaves_the_rest_byte_for_byte():
    body = TWO_SECTIONS.split("\n\n", 1)[1]
    body += "\n\n```\n## not a heading (code)\n```"
    assert [s.heading for s in writer.sections_of(body)] == ["What GQA shares", "What it saves", "Caveats"]
    sec = writer.find_section(body, "  what IT saves ")
    assert sec is not None and writer.section_text(body, sec) == "## What it saves\n\nThe cache shrinks by the group size."
    new = writer.replace_section(body, sec, "## What it saves\n\nBy 8x for Llama 3.1 8B.")
    assert "By 8x for Llama 3.1 8B." in new and "group size" not in new
    before, after = body.split("## What it saves")[0], new.split("## What it saves")[0]
    assert before == after and new.endswith("## Caveats\n\nQuality can drop a little.\n\n```\n## not a heading (code)\n```")
    assert writer.find_section(body, "not a heading (code)") is None


def test_section_scan_is_linear_on_hostile_text():
    hostile = ("#" * 6 + " " * 2000 + "x\n") * 200 + "\n" * 50000
    started = time.perf_counter()
    writer.sections_of(hostile)
    assert time.perf_counter() - started < 1.0


def test_edit_bounds_and_diff_size():
    with pytest.raises(writer.EditRefused, match="limit is 1000"):
        writer.checked_edit("x" * 1001, max_chars=1000)
    with pytest.raises(writer.EditRefused, match="empty"):
        writer.checked_edit("  \n", max_chars=1000)
    with pytest.raises(writer.EditRefused, match="NUL"):
        writer.checked_edit("a\x00b", max_chars=1000)
    prev = Draft(version=2, title="T", body="one\ntwo\nthree", prompt="p", model="m")
    edited = writer.human_edit(prev, "# New title\n\none\n2\nthree\nfour", reviewer="ann")
    assert (edited.version, edited.title, edited.reason, edited.edited_by, edited.prompt) == \
        (3, "New title", "human_edit", "ann", writer.HUMAN_EDIT_PROMPT)
    assert writer.edit_size(prev, edited) == {"lines_added": 3, "lines_removed": 2, "chars_before": 18,
                                              "chars_after": len("# New title\n\none\n2\nthree\nfour")}
    assert writer.edit_hash(prev, "no heading here") == writer.human_edit(prev, "no heading here", reviewer="x").content_hash
    assert writer.human_edit(prev, "no heading here", reviewer="x").title == "T"  # keeps the title


def test_hitl_responses_map_onto_our_actions():
    md = "# T\n\nbody"
    assert supervisor.parse_answer([{"type": "accept", "args": None}]).action == "approve"
    edit = supervisor.parse_answer([{"type": "edit", "args": {"action": "publish_post", "args": {"draft": md}}}])
    assert (edit.action, edit.draft) == ("edit", md)
    resp = supervisor.parse_answer({"type": "response", "args": "shorter intro"})
    assert (resp.action, resp.text) == ("revise", "shorter intro")
    ign = supervisor.parse_answer([{"type": "ignore", "args": None}])
    assert ign.action == "reject" and ign.text
    for bad in ([{"type": "edit", "args": {"action": "publish_post", "args": {}}}], [{"type": "response", "args": ""}],
                [{"type": "shout"}], [{"type": "accept"}, {"type": "accept"}], {"action": "edit"},
                {"action": "approve_with_edits", "draft": "  "}):
        with pytest.raises(supervisor.ResumeValueError):
            supervisor.parse_answer(bad)
    ours = supervisor.parse_answer({"action": "revise", "feedback": "f", "section": "Caveats", "reviewer": "r"})
    assert (ours.action, ours.text, ours.section, ours.reviewer) == ("revise", "f", "Caveats", "r")


# --- in-process runs ---------------------------------------------------------------------------------------

async def test_payload_carries_the_hitl_shape_and_keeps_ours(db, llm):
    snap = await start_post("HITL shape of the gate")
    p = snap.interrupt
    assert p["draft"]["title"] == "GQA and the KV cache" and p["resume_values"][0] == {"action": "approve"}
    assert {"action": "edit", "draft": "<the full Markdown: '# Title' line, then the body>"} in p["resume_values"]
    assert p["action_request"] == {"action": "publish_post", "args": {"draft": _markdown(snap)}}
    assert p["config"] == {"allow_accept": True, "allow_edit": True, "allow_respond": True, "allow_ignore": True}
    assert "Draft v1" in p["description"] and "Accept publishes" in p["description"]
    # An Agent Inbox edit, resumed in-process through the ledger: the edit becomes v2 and waits again.
    edited = _markdown(snap) + "\n\nAn inbox reviewer added this line."
    after = await resume(snap.thread_id, [{"type": "edit", "args": {"action": "publish_post", "args": {"draft": edited}}}])
    assert after.waiting_for_human and after.interrupt["draft"]["version"] == 2
    assert after.interrupt["draft"]["body"].endswith("An inbox reviewer added this line.")
    done = await resume(snap.thread_id, [{"type": "accept", "args": None}])
    assert done.values["outcome"] == "published"


async def test_edit_becomes_a_human_version_checked_then_waits_and_approve_publishes_it(db, llm):
    snap = await start_post("Edit in place then approve", requester="alice")
    tid, v1 = snap.thread_id, snap.interrupt["draft"]
    judge_calls = len(llm.requests_for(JUDGE))
    edited = "# GQA, edited by a human\n\n" + v1["body"] + "\n\nA sentence the human added."
    after = await resume(tid, {"action": "edit", "draft": edited, "reviewer": "ed"})
    assert after.waiting_for_human
    v2 = after.interrupt["draft"]
    assert (v2["version"], v2["title"], v2["edited_by"], v2["prompt"], v2["model"]) == \
        (2, "GQA, edited by a human", "ed", "human-edit", "human")
    assert v2["body"].endswith("A sentence the human added.")
    # The Editor's citation check ran on the edit; the judge did not (no rubric verdict on a human's text).
    assert after.interrupt["citation_check"]["draft_version"] == 2 and after.interrupt["scores"] is None
    assert not any(r["draft_version"] == 2 for r in after.values["reviews"])
    assert len(llm.requests_for(JUDGE)) - judge_calls <= 1  # at most the one batched claim call
    assert after.interrupt["escalated"] is False  # the check passed: nothing to warn about
    # Audit: the edit event (reviewer, diff size, hashes) and the decision, both with the payload hash.
    edit_ev = (await _events(db, tid, "draft_edited"))[0]
    assert edit_ev["actor"] == "ed" and edit_ev["detail"]["lines_added"] >= 2 and edit_ev["detail"]["lines_removed"] >= 1
    assert edit_ev["detail"]["from_version"] == 1 and edit_ev["detail"]["version"] == 2
    assert len(edit_ev["detail"]["payload_hash"]) == 64
    decision = (await _events(db, tid, "human_decision"))[0]["detail"]
    assert decision["decision"] == "edit" and decision["edited_version"] == 2
    assert decision["payload_hash"] == edit_ev["detail"]["payload_hash"]
    # The ledger kept the text and the hash of the version it became.
    gate = next(g for g in await approvals.gates_for_thread(db, tid) if g.decision == "edit")
    assert gate.edited_draft == edited and gate.edited_hash == hashlib.sha256(
        f"{v2['title']}\n\n{v2['body']}".encode()).hexdigest()
    # The human's version is a draft row authored by a human (the learning loop prefers it).
    rows = {r["version"]: r for r in await training.drafts_of(db, tid)}
    assert rows[2]["author"] == "human" and rows[2]["reason"] == "human_edit"

    done = await resume(tid, {"action": "approve", "reviewer": "chief"})
    assert done.values["outcome"] == "published" and done.values["publication"]["title"] == "GQA, edited by a human"
    assert "A sentence the human added." in Path(done.values["publication"]["location"]).with_suffix(".md").read_text()
    path = [(e["from_status"], e["to_status"]) for e in await _events(db, tid, "transition")]
    assert ("awaiting_approval", "editing") in path and path[-1] == ("publishing", "published")


async def test_approve_with_edits_publishes_the_edit_in_one_action(db, llm):
    snap = await start_post("Approve with edits")
    tid = snap.thread_id
    edited = "# Approved as edited\n\nGrouped-query attention shares key/value heads between query heads."
    done = await resume(tid, {"action": "approve_with_edits", "draft": edited, "reviewer": "ann"})
    assert done.values["outcome"] == "published"
    pub = done.values["publication"]
    assert pub["title"] == "Approved as edited"
    assert "shares key/value heads between query heads" in Path(pub["location"]).with_suffix(".md").read_text()
    assert [(d["decision"], d["draft_version"], d["edited_version"]) for d in done.values["decisions"]] == \
        [("approve_with_edits", 1, 2)]
    assert len(await posts.publications_for(db, tid)) == 1
    # The learning loop: the human's published text is the SFT answer, and the Writer's v1 lost to it.
    from tools.training_data import build_export

    export = build_export(await training.decided_posts(db))
    sft = [r for r in export.sft if r["provenance"]["thread_id"] == tid]
    assert len(sft) == 1 and sft[0]["provenance"]["human_edited"] is True
    assert sft[0]["messages"][-1]["content"].startswith("# Approved as edited")
    dpo = [r for r in export.dpo if r["provenance"]["thread_id"] == tid]
    assert [r["provenance"]["rejected"]["version"] for r in dpo] == [1]


async def test_approve_with_edits_with_an_unsupported_claim_waits_showing_it_and_may_still_be_approved(db, llm):
    snap = await start_post("Edit with an unsupported citation")
    tid = snap.thread_id
    # The research is ungrounded here (no corpus): a [3] names no source, which the rules refuse.
    edited = _markdown(snap) + "\n\nGQA was invented in 1850 [3]."
    after = await resume(tid, {"action": "approve_with_edits", "draft": edited, "reviewer": "ann"})
    assert after.waiting_for_human, "an edit with unsupported claims is not published unseen"
    p = after.interrupt
    assert p["draft"]["version"] == 2 and p["escalated"] is True and "approve to publish it anyway" in p["escalation_reason"]
    check = p["citation_check"]
    assert check["passed"] is False and any("1850" in c["sentence"] for c in check["unsupported"])
    assert await posts.publications_for(db, tid) == []
    assert (await posts.get_post(db, tid))["status"] == "escalated"
    done = await resume(tid, {"action": "approve", "reviewer": "ann"})  # the human may still approve
    assert done.values["outcome"] == "published"


async def test_edits_the_ledger_cannot_take_are_refused_and_nothing_is_claimed(db, llm, monkeypatch):
    snap = await start_post("Refused edits")
    tid = snap.thread_id
    with pytest.raises(AnswerRefused, match="changes nothing"):
        await resume(tid, {"action": "edit", "draft": _markdown(snap) + "\n", "reviewer": "x"})
    monkeypatch.setenv("NEWSROOM_EDIT_MAX_CHARS", "1000")
    from config import reset_settings_cache

    reset_settings_cache()
    try:
        with pytest.raises(AnswerRefused, match="limit is 1000"):
            await resume(tid, {"action": "approve_with_edits", "draft": "# T\n\n" + "y" * 2000, "reviewer": "x"})
    finally:
        monkeypatch.delenv("NEWSROOM_EDIT_MAX_CHARS")
        reset_settings_cache()
    with pytest.raises(AnswerRefused, match="no section “Nowhere”"):
        await resume(tid, {"action": "revise", "feedback": "f", "section": "Nowhere", "reviewer": "x"})
    assert all(not g.decided for g in await approvals.gates_for_thread(db, tid))
    done = await resume(tid, {"action": "approve", "reviewer": "x"})
    assert done.values["outcome"] == "published"


async def test_revise_naming_one_section_rewrites_only_that_section(db, llm):
    llm.reset()

    def writer_reply(req):
        if req.wants_json:
            return {"title": "GQA and the KV cache", "sections": ["What GQA shares", "What it saves"]}
        if any(" section>>>" in str(m.get("content")) for m in req.messages):
            return "## What it saves\n\nFor Llama 3.1 8B the cache is 8 times smaller."
        return TWO_SECTIONS  # the notes and the first draft

    llm.on_chat(writer_reply, model=WRITER)
    llm.on_chat(lambda req: PASSING, model=JUDGE)
    snap = await start_post("Section revise")
    tid, v1 = snap.thread_id, snap.interrupt["draft"]
    assert snap.interrupt["sections"] == ["What GQA shares", "What it saves", "Caveats"]
    after = await resume(tid, {"action": "revise", "feedback": "give the factor for Llama 3.1 8B",
                               "section": "what it saves", "reviewer": "sam"})
    v2 = after.interrupt["draft"]
    assert v2["version"] == 2 and v2["prompt"] == "writer.revise_section@1"
    assert "8 times smaller" in v2["body"] and "group size" not in v2["body"]
    untouched = v1["body"].split("## What it saves")[0]
    assert v2["body"].startswith(untouched) and v2["body"].endswith("## Caveats\n\nQuality can drop a little.")
    # The Writer was shown the section and the feedback as data blocks, and asked for that section only.
    req = llm.requests_for(WRITER)[-1]
    blocks = [m["content"] for m in req.messages if m["content"].startswith("<<<DATA-")]
    assert any(" section>>>\n## What it saves\n\nThe cache shrinks by the group size." in b for b in blocks)
    assert any(" feedback>>>" in b and "Llama 3.1 8B" in b for b in blocks)
    assert (await _events(db, tid, "human_decision"))[0]["detail"]["section"] == "What it saves"
    assert (await _events(db, tid, "draft_written"))[-1]["detail"]["section"] == "What it saves"


async def test_a_claimed_edit_whose_process_died_is_redelivered_with_its_text(db, llm):
    """The web page claimed an approve_with_edits, then its process died before the resume ran: recovery
    applies exactly the edit the ledger holds, and publishes it once."""
    from service.decisions import decide, gate_for, pending_interrupt
    from service.recovery import recover
    from tests.approval_fixtures import InProcessServer, ProcessKilled, die_before_the_resume_starts

    snap = await start_post("An edit lost in a crash")
    client = InProcessServer()
    gate = await gate_for(db, await pending_interrupt(client, snap.thread_id))
    edited = "# Recovered edit\n\nGrouped-query attention shares key/value heads between query heads."
    with pytest.raises(ProcessKilled):
        await decide(client, db, gate.gate_id, action="approve_with_edits", text=None, draft=edited,
                     reviewer="erin (web)", via="web", start_run=die_before_the_resume_starts)
    claimed = await approvals.get_gate(db, gate.gate_id)
    assert (claimed.decision, claimed.edited_draft, claimed.run_id) == ("approve_with_edits", edited, None)
    report = await recover(thread_ids=[snap.thread_id])
    assert report.redelivered == [snap.thread_id] and report.errors == {}
    pubs = await posts.publications_for(db, snap.thread_id)
    assert [p["title"] for p in pubs] == ["Recovered edit"]
    assert (await recover(thread_ids=[snap.thread_id])).acted == 0
