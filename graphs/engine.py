"""The supervisor graph: research -> write -> edit -> (revise <= 3 | human approval | escalate) -> publish.

Exported WITHOUT a checkpointer: the Agent Server supplies ours (langgraph.json "checkpointer"),
and the CLI compiles it with storage.checkpointer.checkpointer().
"""
from __future__ import annotations

import logging

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Interrupt, interrupt

from agents import supervisor, writer
from graphs.desks import editor_desk, publisher_desk, researcher_desk, setting, thread_id_of, writer_desk
from graphs.state import HumanDecision, PostInput, PostState
from tools.tracing import install_log_redaction
from tools.tracing import traced_desk

log = logging.getLogger(__name__)


async def supervise(state: PostState, config: RunnableConfig) -> dict:
    """Entry and hub. First visit: the post row (so runs from Studio or the SDK get one too)."""
    tid = thread_id_of(config)
    meta = (config.get("metadata") or {})
    await supervisor.ensure_post(tid, topic=state.topic, requester=state.requester, source=state.source,
                                 metadata=post_metadata(meta),
                                 configurable=config.get("configurable"))  # its overrides, for recovery
    return {}


def post_metadata(run_metadata: dict | None) -> dict:
    """What of a run's metadata its post keeps (where to report back)."""
    return {k: v for k, v in (run_metadata or {}).items() if k in ("chat_id", "user_id", "source")}


def route(state: PostState, config: RunnableConfig) -> str:
    return supervisor.route_next(state, max_revisions=setting(config, "max_revisions"),
                                 policy=setting(config, "approval_policy"))


async def prepare_approval(state: PostState, config: RunnableConfig) -> dict:
    """Status change before the gate, in its own node: the interrupt node must have no side effects."""
    tid = thread_id_of(config)
    escalated, reason = supervisor.escalation(state, max_revisions=setting(config, "max_revisions"))
    reason = reason[:500] if reason else None
    # A post the deadline sweep escalated stays escalated when its draft is asked again (after an
    # invalid answer): escalated -> awaiting_approval is no legal move, and the draft is still overdue.
    await supervisor.advance_post(tid, "escalated" if escalated else "awaiting_approval", actor="editor",
                                  reason=reason, revision=state.revision,
                                  unless_in=() if escalated else ("escalated",))
    return {"escalated": escalated, "escalation_reason": reason}


@traced_desk("human_approval", flush_after=True)
async def human_approval(state: PostState, config: RunnableConfig) -> dict:
    tid = thread_id_of(config)
    usage = await supervisor.post_usage(tid)  # a read, not a side effect
    payload = supervisor.approval_payload(state, thread_id=tid, cost_usd=usage["cost_usd"], tokens=usage["tokens"],
                                          max_revisions=setting(config, "max_revisions"))
    answer = interrupt(payload)
    # --- below runs only once a human has answered -------------------------------------------
    p_hash = supervisor.payload_hash(payload)
    conf = config.get("configurable") or {}
    # The checkpoint this answer resumed from (the one holding the interrupt).
    checkpoint_id = (conf.get("checkpoint_map") or {}).get("") or conf.get("checkpoint_id")
    if supervisor.gate_token_of(answer) is None:
        try:
            supervisor.parse_answer(answer)
            error = supervisor.NOT_FROM_LEDGER
        except supervisor.ResumeValueError as err:
            error = str(err)
        await supervisor.record_desk_event(tid, actor="human", kind="invalid_resume",
                                           detail={"error": error, "value": _shown(answer)})
        return {}  # the supervisor routes back to the gate, which asks again
    # Only a resume the approvals ledger issued decides: its token names the claimed decision, and the
    # decision, its text, an edit's Markdown and the reviewer are the ledger's, not the resume's.
    # The id of this interrupt is the one interrupt() gave it (its task's namespace, answer slot 0).
    interrupt_id = Interrupt.from_ns(None, conf.get("checkpoint_ns") or "").id
    shown = state.latest_draft
    claimed = await supervisor.ledger_decision(tid, interrupt_id, answer, checkpoint_id=checkpoint_id,
                                               draft_hash=shown.content_hash)
    if claimed is None:
        await supervisor.record_desk_event(tid, actor="human", kind="invalid_resume",
                                           detail={"error": supervisor.NOT_FROM_LEDGER, "value": _shown(answer)})
        return {}
    decision, feedback, reviewer = claimed.action, claimed.text, claimed.reviewer
    update: dict = {}
    edited = None
    detail = {"feedback": feedback, "draft_version": shown.version, "escalated": state.escalated,
              "section": claimed.section}
    if claimed.draft is not None:
        # The human's text becomes the next draft version (the Editor's citation check is next).
        edited = writer.human_edit(shown, claimed.draft, reviewer=reviewer)
        size = writer.edit_size(shown, edited)
        detail.update(edited_version=edited.version, edited_hash=edited.content_hash, **size)
        await supervisor.record_draft(tid, edited, [])
        await supervisor.record_desk_event(tid, actor=reviewer, kind="draft_edited", detail={
            "version": edited.version, "from_version": shown.version, "reviewer": reviewer, "hash": edited.content_hash,
            "payload_hash": p_hash, "approve": decision == "approve_with_edits", **size})
        update["drafts"] = [edited.model_dump(mode="json")]
    await supervisor.record_decision(tid, reviewer=reviewer, decision=decision, payload_hash=p_hash,
                                     checkpoint_id=checkpoint_id, detail=detail)
    # As the model dumps it, with its key: the keyed append reducer tells decisions apart by it.
    answered = HumanDecision(decision=decision, reviewer=reviewer, feedback=feedback, payload_hash=p_hash,
                             answered_checkpoint=checkpoint_id, draft_version=shown.version,
                             section=claimed.section, edited_version=edited.version if edited else None)
    update["decisions"] = [answered.model_dump(mode="json")]
    if decision == "reject":
        await supervisor.advance_post(tid, "rejected", actor=reviewer, reason=feedback)
        update["outcome"] = "rejected"
    return update


def _shown(answer) -> str:
    """A resume value as the audit log keeps it: without its gate token."""
    if isinstance(answer, dict):
        answer = {k: ("[gate token]" if k == "gate_token" else v) for k, v in answer.items()}
    return str(answer)[:500]


def build_graph() -> StateGraph:
    g = StateGraph(PostState, input_schema=PostInput)
    g.add_node("supervisor", supervise)
    g.add_node("researcher", researcher_desk)
    g.add_node("writer", writer_desk)
    g.add_node("editor", editor_desk)
    g.add_node("prepare_approval", prepare_approval)
    g.add_node("human_approval", human_approval)
    g.add_node("publisher", publisher_desk)
    g.add_edge(START, "supervisor")
    g.add_conditional_edges("supervisor", route, {
        "researcher": "researcher", "writer": "writer", "editor": "editor",
        "prepare_approval": "prepare_approval", "publisher": "publisher", "finish": END,
    })
    for desk in ("researcher", "writer", "editor", "human_approval", "publisher"):
        g.add_edge(desk, "supervisor")
    g.add_edge("prepare_approval", "human_approval")
    return g


install_log_redaction()  # the Agent Server imports this module: its logs get scrubbed too
graph = build_graph().compile(name="newsroom")
