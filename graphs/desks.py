"""One subgraph per desk. Nodes only wire: read state, call the desk (agents/), return an update."""
from __future__ import annotations

import logging

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from agents import editor, publisher, researcher, supervisor, writer
from config import ConfigError, get_settings, validate_override
from graphs.state import PostState
from tools.llm import LLMUnavailable, get_gateway
from tools.publish import destination_from_settings, publish_once
from tools.tracing import record_scores, traced_desk

log = logging.getLogger(__name__)


def thread_id_of(config: RunnableConfig) -> str:
    return str(config["configurable"]["thread_id"])


def setting(config: RunnableConfig, name: str):
    """A per-run override in config['configurable'] (Studio, tests) or the environment's setting.
    An override is held to the setting's own bounds (an assistant's config reaches here unchecked
    by the server's auth): one out of bounds is ignored with a warning, never obeyed."""
    value = (config.get("configurable") or {}).get(name)
    if value is None:
        return getattr(get_settings(), name)
    try:
        return validate_override(name, value)
    except ConfigError as err:
        log.warning("%s: using NEWSROOM_%s instead", err, name.upper())
        return getattr(get_settings(), name)


def failed(reason: str) -> dict:
    return {"outcome": "failed", "error": reason[:2000]}


async def _fail_post(thread_id: str, desk: str, reason: str) -> dict:
    log.error("post %s failed in %s: %s", thread_id, desk, reason)
    await supervisor.advance_post(thread_id, "failed", actor=desk, reason=reason[:500])
    return failed(f"{desk}: {reason}")


# --- Researcher -------------------------------------------------------------------------------

async def start_research(state: PostState, config: RunnableConfig) -> dict:
    await supervisor.advance_post(thread_id_of(config), "researching", actor="researcher")
    return {}


@traced_desk("researcher")
async def gather(state: PostState, config: RunnableConfig) -> dict:
    tid = thread_id_of(config)
    try:
        notes = await researcher.gather_research(
            get_gateway(), topic=state.topic, thread_id=tid, top_k=setting(config, "retrieval_top_k"),
            max_tokens=setting(config, "research_max_tokens"),
        )
    except LLMUnavailable as err:
        return await _fail_post(tid, "researcher", str(err))
    await supervisor.record_desk_event(tid, actor="researcher", kind="research_done",
                                       detail={"grounded": notes.grounded, "citations": len(notes.citations)})
    return {"research": notes.model_dump(mode="json")}


# --- Writer -----------------------------------------------------------------------------------

async def start_drafting(state: PostState, config: RunnableConfig) -> dict:
    await supervisor.advance_post(thread_id_of(config), "drafting", actor="writer", revision=state.revision)
    return {}


@traced_desk("writer")
async def write(state: PostState, config: RunnableConfig) -> dict:
    tid = thread_id_of(config)
    previous, review, decision = state.latest_draft, state.latest_review, state.latest_decision
    feedback, reason, revision = None, "first", state.revision
    if previous is not None:
        if decision is not None and decision.draft_version == previous.version and decision.decision == "revise":
            feedback, reason = f"From the human reviewer: {decision.feedback}", "human_feedback"
        elif review is not None and review.draft_version == previous.version:
            feedback = editor.feedback_for_writer(review.verdict, review.error)
            reason, revision = "editor_feedback", state.revision + 1
    try:
        draft = await writer.write_draft(
            get_gateway(), topic=state.topic, notes=state.research, previous=previous, feedback=feedback,
            reason=reason, thread_id=tid, max_tokens=setting(config, "writer_max_tokens"),
        )
    except (LLMUnavailable, ValueError) as err:
        return await _fail_post(tid, "writer", str(err))
    await supervisor.record_desk_event(tid, actor="writer", kind="draft_written",
                                       detail={"version": draft.version, "reason": reason, "model": draft.model,
                                               "prompt": draft.prompt, "hash": draft.content_hash})
    return {"drafts": [draft.model_dump(mode="json")], "revision": revision}


# --- Editor -----------------------------------------------------------------------------------

async def start_editing(state: PostState, config: RunnableConfig) -> dict:
    await supervisor.advance_post(thread_id_of(config), "editing", actor="editor", revision=state.revision)
    return {}


@traced_desk("editor")
async def judge(state: PostState, config: RunnableConfig) -> dict:
    tid, draft = thread_id_of(config), state.latest_draft
    review = await editor.review_draft(
        get_gateway(), topic=state.topic, title=draft.title, body=draft.body, notes=state.research.notes,
        draft_version=draft.version, thread_id=tid, max_attempts=setting(config, "judge_max_attempts"),
        max_tokens=setting(config, "judge_max_tokens"), prompt_ref=get_settings().judge_prompt,
    )
    await supervisor.record_desk_event(
        tid, actor="editor", kind="verdict",
        detail={"draft_version": draft.version, "draft_hash": draft.content_hash, "decision": review.decision,
                "mean": review.mean,
                "scores": review.verdict.scores if review.verdict else None,
                "flag": review.verdict.flag if review.verdict else None, "error": review.error},
    )
    _trace_verdict(tid, review)
    return {"reviews": [review.model_dump(mode="json")]}


def _trace_verdict(tid: str, review) -> None:
    """The verdict as Langfuse scores on the thread's trace (a no-op when tracing is off)."""
    scores: dict = {"editor_decision": review.decision}
    comments = {}
    if review.verdict is not None:
        scores.update(review.verdict.scores, editor_mean=review.mean,
                      confident_hallucination=review.verdict.flag == "confident_hallucination")
        comments = review.verdict.reasoning.model_dump()
    record_scores(tid, scores, key=review.key, comments=comments,
                  metadata={"draft_version": review.draft_version, "judge_model": review.judge_model})


# --- Publisher --------------------------------------------------------------------------------

async def start_publishing(state: PostState, config: RunnableConfig) -> dict:
    # A desk replayed after its publish committed (the ledger marks the post published in the same
    # transaction) finds the post published: nothing to move; publish_once then replays from the ledger.
    await supervisor.advance_post(thread_id_of(config), "publishing", actor="publisher", unless_in=("published",))
    return {}


@traced_desk("publisher", flush_after=True)
async def publish(state: PostState, config: RunnableConfig) -> dict:
    from storage.db import get_database

    tid, draft = thread_id_of(config), state.latest_draft
    review = state.latest_review
    refused = await supervisor.publication_refused(tid, draft, default_policy=get_settings().approval_policy)
    if refused is not None:
        await supervisor.record_desk_event(tid, actor="publisher", kind="publish_refused",
                                           detail={"draft_version": draft.version, "hash": draft.content_hash})
        return await _fail_post(tid, "publisher", refused)
    item = publisher.render_post(tid, draft, state.research, requester=state.requester,
                                 scores=review.verdict.scores if review and review.verdict else None,
                                 front_matter_extra=get_settings().publish_front_matter)
    row, now = await publish_once(await get_database(), destination_from_settings(get_settings()),
                                  thread_id=tid, item=item, draft_hash=draft.content_hash)
    pub = {"publish_key": row["publish_key"], "destination": row["destination"], "location": row["location"],
           "draft_hash": row["draft_hash"], "title": row["title"], "replayed": not now}
    return {"publication": pub, "outcome": "published"}


def _desk(name: str, *steps) -> "StateGraph":
    g = StateGraph(PostState)
    prev = START
    for fn in steps:
        g.add_node(fn.__name__, fn)
        g.add_edge(prev, fn.__name__)
        prev = fn.__name__
    g.add_edge(prev, END)
    # No checkpoints of its own (checkpointer=False): a desk is one step of the supervisor graph,
    # whose checkpoint after the desk holds its output. A desk cut off midway reruns from its
    # start (the status move is idempotent, LLM calls are recorded by call id), which is what
    # resuming from a desk-internal checkpoint did anyway, at half the checkpoint writes per
    # post (30 -> 14). Studio still draws the desk and streams its nodes' updates.
    return g.compile(name=name, checkpointer=False)


researcher_desk = _desk("researcher", start_research, gather)
writer_desk = _desk("writer", start_drafting, write)
editor_desk = _desk("editor", start_editing, judge)
publisher_desk = _desk("publisher", start_publishing, publish)
