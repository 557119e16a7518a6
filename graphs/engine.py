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
from agents.models import CostEstimate
from config import get_settings
from config.run_config import RunConfig
from graphs import ledger
from graphs.desks import (
    editor_desk,
    publisher_desk,
    record_cost_score,
    researcher_desk,
    score_post_cost,
    thread_id_of,
    writer_desk,
)
from graphs.state import HumanDecision, PostInput, PostState
from tools.llm import role_prices
from tools.redaction import install_log_redaction
from tools.tracing import traced_desk

log = logging.getLogger(__name__)


async def supervise(state: PostState, config: RunnableConfig) -> dict:
    """Entry and hub, at every desk boundary. First visit: the post row (so runs from Studio or the
    SDK get one too) and the cost estimate (state and a `cost_estimate` event, before any LLM call).
    Every visit of a run with a budget: the post's spend so far, from its recorded usage, for the
    budget check in route()."""
    tid = thread_id_of(config)
    update: dict = {}
    if state.cost_estimate is None:
        meta = (config.get("metadata") or {})
        await ledger.ensure_post(tid, topic=state.topic, requester=state.requester, source=state.source,
                                 metadata=post_metadata(meta),
                                 configurable=config.get("configurable"))  # its overrides, for recovery
        estimate = cost_estimate(config)
        await ledger.record_desk_event(tid, actor="supervisor", kind="cost_estimate",
                                       detail={**estimate.model_dump(exclude={"steps"}),
                                               "summary": estimate.summary()})
        update["cost_estimate"] = estimate.model_dump(mode="json")
    # The spend is read for route()'s budget check only: a run without a budget, or one that has
    # finished (route() then ends it whatever the spend), has no use for it (a read per visit saved).
    if state.outcome == "pending" and RunConfig.from_runnable_config(config).run_budget_usd is not None:
        spent = (await ledger.post_usage(tid))["cost_usd"]
        if spent != state.spent_usd:
            update["spent_usd"] = spent
    return update


def cost_estimate(config: RunnableConfig | None = None) -> CostEstimate:
    """The run's estimate from the gateway's price table and its limits (per-run overrides in
    config["configurable"] applied, as the desks will apply them)."""
    settings = get_settings()
    run = RunConfig.from_runnable_config(config, settings)  # the run's overrides, read once
    # Only the whitelisted overrides count, as in the desks (retrieval_hyde, say, is never per run).
    limits = {name: getattr(run, name) if name in RunConfig.model_fields else getattr(settings, name)
              for name in supervisor.ESTIMATE_LIMITS}
    limits.update(chunk_tokens=settings.chunk_max_tokens or 256, tokens_per_s=settings.estimate_tokens_per_s,
                  prompt_tokens_per_s=settings.estimate_prompt_tokens_per_s,
                  budget_usd=run.run_budget_usd)
    return supervisor.estimate_run(role_prices(settings), limits=limits)


def post_metadata(run_metadata: dict | None) -> dict:
    """What of a run's metadata its post keeps (where to report back)."""
    return {k: v for k, v in (run_metadata or {}).items() if k in ("chat_id", "user_id", "source")}


def route(state: PostState, config: RunnableConfig) -> str:
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    return supervisor.route_next(state, max_revisions=run.max_revisions, policy=run.approval_policy,
                                 budget_usd=run.run_budget_usd, rubric_judge=run.rubric_judge)


async def stop_over_budget(state: PostState, config: RunnableConfig) -> dict:
    """The run passed its budget at this desk boundary: a `budget_exceeded` event with the spend, the
    cost score, then the draft to a human (escalated, the spend as the reason); with no draft yet
    there is nothing to show, so the post fails with that reason. Once per draft: a gate asked again
    (an invalid answer) passes through here without a second event."""
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    tid = thread_id_of(config)
    budget = run.run_budget_usd
    usage = await ledger.post_usage(tid)
    stop = supervisor.budget_stop(state, budget_usd=budget, usage=usage, stopped_before=supervisor.next_desk(
        state, max_revisions=run.max_revisions, policy=run.approval_policy, rubric_judge=run.rubric_judge))
    update: dict = {"budget_stop": stop.model_dump(mode="json")}
    if state.budget_stop is None or state.budget_stop.draft_version != stop.draft_version:
        await ledger.record_desk_event(tid, actor="supervisor", kind="budget_exceeded",
                                       detail={**stop.model_dump(), "reason": supervisor.budget_reason(stop)})
        record_cost_score(tid, usage, budget_usd=budget)
    if stop.draft_version is None:
        reason = (f"over budget before any draft: spent ${stop.spent_usd:.4f} of ${stop.budget_usd:.4f} "
                  f"({stop.llm_calls} LLM calls); stopped before the {stop.stopped_before}")
        await ledger.advance_post(tid, "failed", actor="supervisor", reason=reason)
        update.update(outcome="failed", error=reason)
    return update


def after_budget_stop(state: PostState) -> str:
    return "prepare_approval" if state.latest_draft is not None else END


async def prepare_approval(state: PostState, config: RunnableConfig) -> dict:
    """Status change before the gate, in its own node: the interrupt node must have no side effects."""
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    tid = thread_id_of(config)
    escalated, reason = supervisor.escalation(state, max_revisions=run.max_revisions)
    reason = reason[:500] if reason else None
    # A post the deadline sweep escalated stays escalated when its draft is asked again (after an
    # invalid answer): escalated -> awaiting_approval is no legal move, and the draft is still overdue.
    await ledger.advance_post(tid, "escalated" if escalated else "awaiting_approval", actor="editor",
                              reason=reason, revision=state.revision,
                              unless_in=() if escalated else ("escalated",))
    await score_post_cost(tid, budget_usd=run.run_budget_usd)
    return {"escalated": escalated, "escalation_reason": reason}


@traced_desk("human_approval", flush_after=True)
async def human_approval(state: PostState, config: RunnableConfig) -> dict:
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    tid = thread_id_of(config)
    usage = await ledger.post_usage(tid)  # a read, not a side effect
    payload = supervisor.approval_payload(state, thread_id=tid, cost_usd=usage["cost_usd"], tokens=usage["tokens"],
                                          max_revisions=run.max_revisions,
                                          budget_usd=run.run_budget_usd)
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
        await ledger.record_desk_event(tid, actor="human", kind="invalid_resume",
                                       detail={"error": error, "value": _shown(answer)})
        return {}  # the supervisor routes back to the gate, which asks again
    # Only a resume the approvals ledger issued decides: its token names the claimed decision, and the
    # decision, its text, an edit's Markdown and the reviewer are the ledger's, not the resume's.
    # The id of this interrupt is the one interrupt() gave it (its task's namespace, answer slot 0).
    interrupt_id = Interrupt.from_ns(None, conf.get("checkpoint_ns") or "").id
    shown = state.latest_draft
    claimed = await ledger.ledger_decision(tid, interrupt_id, answer, checkpoint_id=checkpoint_id,
                                           draft_hash=shown.content_hash)
    if claimed is None:
        await ledger.record_desk_event(tid, actor="human", kind="invalid_resume",
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
        await ledger.record_draft(tid, edited, [])
        await ledger.record_desk_event(tid, actor=reviewer, kind="draft_edited", detail={
            "version": edited.version, "from_version": shown.version, "reviewer": reviewer, "hash": edited.content_hash,
            "payload_hash": p_hash, "approve": decision == "approve_with_edits", **size})
        update["drafts"] = [edited.model_dump(mode="json")]
    await ledger.record_decision(tid, reviewer=reviewer, decision=decision, payload_hash=p_hash,
                                 checkpoint_id=checkpoint_id, detail=detail)
    # As the model dumps it, with its key: the keyed append reducer tells decisions apart by it.
    answered = HumanDecision(decision=decision, reviewer=reviewer, feedback=feedback, payload_hash=p_hash,
                             answered_checkpoint=checkpoint_id, draft_version=shown.version,
                             section=claimed.section, edited_version=edited.version if edited else None)
    update["decisions"] = [answered.model_dump(mode="json")]
    if decision == "reject":
        await ledger.advance_post(tid, "rejected", actor=reviewer, reason=feedback)
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
    g.add_node("over_budget", stop_over_budget)
    g.add_edge(START, "supervisor")
    g.add_conditional_edges("supervisor", route, {
        "researcher": "researcher", "writer": "writer", "editor": "editor",
        "prepare_approval": "prepare_approval", "publisher": "publisher", "finish": END,
        "over_budget": "over_budget",
    })
    g.add_conditional_edges("over_budget", after_budget_stop, {"prepare_approval": "prepare_approval", END: END})
    for desk in ("researcher", "writer", "editor", "human_approval", "publisher"):
        g.add_edge(desk, "supervisor")
    g.add_edge("prepare_approval", "human_approval")
    return g


install_log_redaction()  # the Agent Server imports this module: its logs get scrubbed too
graph = build_graph().compile(name="newsroom")
