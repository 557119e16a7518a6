"""One subgraph per desk. Nodes only wire: read state, call the desk (agents/), return an update."""
from __future__ import annotations

import logging

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from agents import editor, publisher, researcher, writer
from agents.models import Candidate, DraftOutline, FetchedSource, ResearchPlan, RetrievalResult
from agents.prompts import PromptNotFound
from config import get_settings
from config.run_config import RunConfig
from graphs import ledger
from graphs.state import PostState
from tools.llm import LLMUnavailable, get_gateway
from tools.publish import PublishFailed, destinations_from_settings, publish_everywhere
from tools.tracing import record_scores, traced_desk, tracing_on

log = logging.getLogger(__name__)


def thread_id_of(config: RunnableConfig) -> str:
    return str(config["configurable"]["thread_id"])


def failed(reason: str) -> dict:
    return {"outcome": "failed", "error": reason[:2000]}


async def _fail_post(thread_id: str, desk: str, reason: str) -> dict:
    log.error("post %s failed in %s: %s", thread_id, desk, reason)
    await ledger.advance_post(thread_id, "failed", actor=desk, reason=reason[:500])
    await score_post_cost(thread_id)
    return failed(f"{desk}: {reason}")


async def score_post_cost(thread_id: str, *, budget_usd: float | None = None) -> None:
    """record_cost_score with the post's usage read from the database, only when tracing is on:
    the score is that read's only consumer (a read of the post row per call saved otherwise)."""
    if tracing_on():
        record_cost_score(thread_id, await ledger.post_usage(thread_id), budget_usd=budget_usd)


def record_cost_score(thread_id: str, usage: dict, *, budget_usd: float | None = None) -> None:
    """The post's spend so far as the numeric Langfuse score `cost_usd` on its trace. One score id per
    post (key "cost"): each gate, stop and publication upserts it, so it ends as the post's total."""
    record_scores(thread_id, {"cost_usd": float(usage["cost_usd"])}, key="cost",
                  comments={"cost_usd": f"{usage['llm_calls']} LLM calls, {usage['tokens']} tokens"},
                  metadata={"llm_calls": usage["llm_calls"], "tokens": usage["tokens"], "budget_usd": budget_usd})


# --- Researcher: plan -> retrieve -> fetch -> notes ---------------------------------------------

async def start_research(state: PostState, config: RunnableConfig) -> dict:
    await ledger.advance_post(thread_id_of(config), "researching", actor="researcher")
    return {}


async def _corpus_ready() -> bool | None:
    """Whether the corpus (pages fetched for posts aside) has any chunk, or None when the
    embedding stack is not installed."""
    try:
        from tools import retrieval
    except ImportError as err:  # the embedding stack is optional for a bare install
        log.warning("retrieval unavailable (%s): research will be ungrounded", err)
        return None
    return await retrieval.has_corpus(outside_prefix=researcher.WEB_PREFIX)


@traced_desk("researcher.plan")
async def plan(state: PostState, config: RunnableConfig) -> dict:
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    tid = thread_id_of(config)
    topic, urls = researcher.split_request(state.topic, state.sources, max_urls=run.fetch_max_urls)
    n = run.research_subquestions
    chunks = await _corpus_ready()
    if not chunks or n == 0:
        why = "no sub-questions asked for" if n == 0 else "the corpus is empty: nothing to plan retrieval over"
        result = ResearchPlan(topic=topic, urls=urls, skipped=why, corpus_ready=chunks)
    else:
        from tools import retrieval  # importable: _corpus_ready found chunks

        retrieval.warm_up_embedder()  # loads while the plan call waits on the LLM
        try:
            result = await researcher.plan_research(get_gateway(), topic=topic, urls=urls, n=n, thread_id=tid,
                                                    max_tokens=run.plan_max_tokens)
        except LLMUnavailable as err:
            return await _fail_post(tid, "researcher", str(err))
        result = result.model_copy(update={"corpus_ready": chunks})
    await ledger.record_desk_event(tid, actor="researcher", kind="research_plan", detail={
        "sub_questions": [q.question for q in result.sub_questions], "urls": len(result.urls),
        "skipped": result.skipped, "error": result.error})
    return {"plan": result.model_dump(mode="json")}


@traced_desk("researcher.retrieve")
async def retrieve(state: PostState, config: RunnableConfig) -> dict:
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    if state.outcome != "pending":
        return {}
    # The plan step just asked (one read per post saved); a plan from an older checkpoint did not.
    known = state.plan is not None and "corpus_ready" in state.plan.model_fields_set
    chunks = state.plan.corpus_ready if known else await _corpus_ready()
    if not chunks:
        skipped = "the corpus is empty" if chunks is False else "retrieval is not installed"
        return {"retrieval": RetrievalResult(skipped=skipped).model_dump(mode="json")}
    from tools import retrieval

    tid = thread_id_of(config)
    found = await retrieval.get_retriever().search_many(
        researcher.search_queries(state.plan), k=run.retrieval_top_k, thread_id=tid,
        filters={"exclude_source_prefix": researcher.WEB_PREFIX}, floor=run.retrieval_floor)
    result = RetrievalResult.model_validate(found.model_dump())
    await ledger.record_desk_event(tid, actor="researcher", kind="retrieval", detail={
        "queries": len(result.queries), "notes": [c.title for c in result.candidates[:10]],
        "below_floor": result.below_floor, "best_cosine": result.best_cosine, "floor": result.floor})
    return {"retrieval": result.model_dump(mode="json")}


@traced_desk("researcher.fetch")
async def fetch(state: PostState, config: RunnableConfig) -> dict:
    """The pages the request names: fetched, stored as documents of this post, their best chunk kept.
    A page that cannot be fetched is reported (event, notes, gate), never fatal."""
    if state.outcome != "pending":
        return {}
    tid = thread_id_of(config)
    out: list[dict] = []
    for url in state.plan.urls:
        out.append((await _fetch_one(tid, url, state.plan.topic)).model_dump(mode="json"))
    if out:
        await ledger.record_desk_event(tid, actor="researcher", kind="fetch", detail={
            "fetched": [f["url"] for f in out if f["ok"]],
            "failed": [{"url": f["url"], "error": f["error"]} for f in out if not f["ok"]]})
    return {"fetched": out}


async def _fetch_one(tid: str, url: str, topic: str) -> FetchedSource:
    from tools.webfetch import FetchError, fetch_page

    try:
        page = await fetch_page(url)
    except FetchError as err:
        log.warning("post %s: could not fetch %s: %s", tid, url, err)
        return FetchedSource(url=url, ok=False, error=str(err)[:500])
    try:
        from tools import retrieval
        from tools.ingest import ingest_text

        retriever = retrieval.get_retriever()
        path = researcher.web_source_path(tid, page.final_url)
        await ingest_text(path, page.text, kind="markdown", title=page.title, db=(await retriever.store()).db,
                          embedder=retriever.embedder,
                          metadata={"url": page.final_url, "requested_url": url, "thread_id": tid})
        best = await retriever.retrieve(topic, k=1, hyde=False, hybrid=False, filters={"source_path": path},
                                        thread_id=tid)
    except Exception as err:  # noqa: BLE001 - a page we cannot index is reported like one we cannot fetch
        log.warning("post %s: could not index %s: %s", tid, url, err)
        return FetchedSource(url=url, ok=False, title=page.title, error=f"fetched but not indexed: {str(err)[:300]}")
    if not best:
        return FetchedSource(url=url, ok=False, title=page.title, source_path=path, error="no text to cite")
    c = best[0]
    chunk = Candidate(chunk_id=c.chunk_id, document_id=c.document_id, source_path=c.source_path, title=c.title,
                      heading=c.heading_path, content=c.content, score=c.score, cosine=c.cosine or c.score)
    return FetchedSource(url=page.final_url, ok=True, title=page.title, source_path=path, chunk=chunk)


@traced_desk("researcher")
async def gather(state: PostState, config: RunnableConfig) -> dict:
    """The numbered notes: fetched pages and retrieved notes with their excerpts, or ungrounded
    notes that say why (the human sees the reason at the gate)."""
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    if state.outcome != "pending":
        return {}
    tid = thread_id_of(config)
    fetched = state.fetched or []
    sources = researcher.select_sources(state.retrieval, fetched, top_k=run.retrieval_top_k)
    fetch_errors = [f"{f.url}: {f.error}" for f in fetched if not f.ok]
    if sources:
        notes = researcher.notes_from_sources(sources, urls={f.chunk.document_id: f.url for f in fetched
                                                            if f.ok and f.chunk is not None})
        notes.queries = state.retrieval.queries if state.retrieval else [state.plan.topic]
        notes.fetch_errors = fetch_errors
    else:
        reason = researcher.ungrounded_reason(state.plan, state.retrieval, fetched)
        try:
            notes = await researcher.ungrounded_notes(get_gateway(), topic=state.plan.topic, reason=reason,
                                                      thread_id=tid, max_tokens=run.research_max_tokens,
                                                      fetch_errors=fetch_errors)
        except LLMUnavailable as err:
            return await _fail_post(tid, "researcher", str(err))
    await ledger.record_desk_event(tid, actor="researcher", kind="research_done",
                                   detail={"grounded": notes.grounded, "citations": len(notes.citations),
                                           "ungrounded_reason": notes.ungrounded_reason,
                                           "fetch_errors": fetch_errors})
    return {"research": notes.model_dump(mode="json")}


# --- Writer: outline -> draft -------------------------------------------------------------------

async def start_drafting(state: PostState, config: RunnableConfig) -> dict:
    await ledger.advance_post(thread_id_of(config), "drafting", actor="writer", revision=state.revision)
    return {}


@traced_desk("writer.outline")
async def outline(state: PostState, config: RunnableConfig) -> dict:
    """The first draft's outline (revisions keep the draft's structure: no new outline). Ungrounded
    notes get none: there are no sources to organise, and it saves a local LLM call."""
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    if state.latest_draft is not None or state.outline_for(1) is not None:
        return {}
    if not (state.research and state.research.grounded):
        return {"outlines": [DraftOutline(version=1, error="no outline: the research is ungrounded").model_dump(mode="json")]}
    tid = thread_id_of(config)
    questions = [q.question for q in (state.plan.sub_questions if state.plan else [])]
    result = (writer.outline_from_plan(_topic(state), questions, version=1) if run.outline_source == "plan"
              else None)
    if result is None:
        try:
            result = await writer.write_outline(get_gateway(), topic=_topic(state), notes=state.research, version=1,
                                                thread_id=tid, max_tokens=run.outline_max_tokens, questions=questions)
        except LLMUnavailable as err:
            return await _fail_post(tid, "writer", str(err))
    return {"outlines": [result.model_dump(mode="json")]}


def _topic(state: PostState) -> str:
    return state.plan.topic if state.plan else state.topic


@traced_desk("writer")
async def write(state: PostState, config: RunnableConfig) -> dict:
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    if state.outcome != "pending":
        return {}
    tid = thread_id_of(config)
    previous = state.latest_draft
    task = writer.next_draft_task(previous=previous, review=state.latest_review, decision=state.latest_decision,
                                  check=state.citation_check_for(previous.version) if previous else None,
                                  revision=state.revision)
    feedback, reason, revision, passed, section = (task.feedback, task.reason, task.revision, task.passed_sentences,
                                                   task.section)
    sent: list[dict] = []
    try:
        draft = None
        if section:
            # A human named one section: only it is rewritten (None: the draft has no such heading,
            # so the whole draft is revised on the same feedback).
            draft = await writer.rewrite_section(
                get_gateway(), topic=_topic(state), notes=state.research, previous=state.latest_draft,
                section_name=section, feedback=feedback, thread_id=tid, max_tokens=run.writer_max_tokens,
                passed_sentences=passed, sent_messages=sent)
        draft = draft or await writer.write_draft(
            get_gateway(), topic=_topic(state), notes=state.research, previous=state.latest_draft, feedback=feedback,
            reason=reason, thread_id=tid, max_tokens=run.writer_max_tokens,
            outline=state.outline_for(1), passed_sentences=passed, sent_messages=sent,
            draft_format=run.draft_format,
        )
    except (LLMUnavailable, ValueError) as err:
        return await _fail_post(tid, "writer", str(err))
    await ledger.record_draft(tid, draft, sent)
    await ledger.record_desk_event(tid, actor="writer", kind="draft_written",
                                   detail={"version": draft.version, "reason": reason, "model": draft.model,
                                           "prompt": draft.prompt, "hash": draft.content_hash,
                                           "dropped_citations": draft.dropped_citations,
                                           "kept_claims": draft.kept_claims, "section": draft.section})
    return {"drafts": [draft.model_dump(mode="json")], "revision": revision}


# --- Editor: citation check -> rubric judge ----------------------------------------------------------

async def start_editing(state: PostState, config: RunnableConfig) -> dict:
    await ledger.advance_post(thread_id_of(config), "editing", actor="editor", revision=state.revision)
    return {}


async def support_vectors(body: str, notes):
    """The vectors the Editor's support check compares (tools/embeddings), or None when the
    embedding stack cannot run here: then the rules and the claim call decide without it."""
    try:
        from tools.embeddings import EmbedderError, vectors_for
    except ImportError as err:  # the embedding stack is optional for a bare install
        log.warning("support check skipped (%s)", err)
        return None
    try:
        return await vectors_for(editor.support_texts(body, notes))
    except EmbedderError as err:
        log.warning("support check skipped: %s", err)
        return None


@traced_desk("editor.citations")
async def check_citations(state: PostState, config: RunnableConfig) -> dict:
    """The citation gate: rules, the embedding support check, then one batched claim-support call
    on the judge route."""
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    tid, draft = thread_id_of(config), state.latest_draft
    if state.citation_check_for(draft.version) is not None:
        return {}
    previous = state.citation_check_for(draft.version - 1) if draft.version > 1 else None
    replaced = state.drafts[-2] if len(state.drafts) > 1 and draft.reason != "human_edit" else None
    notes = state.research
    vectors = await support_vectors(draft.body, notes) if run.support_check and notes and notes.citations else None
    report = await editor.check_citations(
        get_gateway(), body=draft.body, notes=state.research, draft_version=draft.version, thread_id=tid,
        use_judge=run.claim_check, max_tokens=run.claims_max_tokens, previous=previous,
        previous_words=len(replaced.body.split()) if replaced else None, support_vectors=vectors)
    await ledger.record_desk_event(tid, actor="editor", kind="citation_check", detail={
        "draft_version": draft.version, "passed": report.passed, "support_rate": report.support_rate,
        "supported": report.supported, "checked": report.checked, "checked_by": report.checked_by,
        "unsupported": [{"sentence": c.sentence[:300], "problems": c.problems} for c in report.failures][:20],
        "error": report.error})
    if report.support_rate is not None:
        record_scores(tid, {"citation_support": report.support_rate}, key=report.key,
                      comments={"citation_support": f"{report.supported}/{report.checked} cited claims supported "
                                                    f"({report.checked_by})"},
                      metadata={"draft_version": draft.version, "passed": report.passed})
    return {"citation_checks": [report.model_dump(mode="json")]}


def after_citations(state: PostState) -> str:
    """A draft with unsupported claims goes back to the Writer (via the supervisor) unjudged; a
    human's edit is checked, never judged (the supervisor takes it to the gate or the Publisher)."""
    if state.latest_draft.reason == "human_edit":
        return END
    report = state.citation_check_for(state.latest_draft.version)
    return "judge" if report is None or report.passed else END


@traced_desk("editor")
async def judge(state: PostState, config: RunnableConfig) -> dict:
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    tid, draft = thread_id_of(config), state.latest_draft
    if not run.rubric_judge:  # no verdict: the draft goes to a human as it is (never approved unjudged)
        await ledger.record_desk_event(tid, actor="editor", kind="verdict_skipped", detail={
            "draft_version": draft.version, "why": "NEWSROOM_RUBRIC_JUDGE is off"})
        return {}
    prompt_ref = get_settings().judge_prompt  # not a per-run override: a prompt is promoted by config only
    try:
        review = await editor.review_draft(
            get_gateway(), topic=_topic(state), title=draft.title, body=draft.body, notes=state.research.notes,
            draft_version=draft.version, thread_id=tid, max_attempts=run.judge_max_attempts,
            max_tokens=run.judge_max_tokens, prompt_ref=prompt_ref,
        )
    except PromptNotFound as err:
        return await _fail_post(tid, "editor", f"NEWSROOM_JUDGE_PROMPT={prompt_ref}: {err}")
    await ledger.record_desk_event(
        tid, actor="editor", kind="verdict",
        detail={"draft_version": draft.version, "draft_hash": draft.content_hash, "decision": review.decision,
            "mean": review.mean, "prompt": review.judge_prompt,
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
                  metadata={"draft_version": review.draft_version, "judge_model": review.judge_model,
                            "judge_prompt": review.judge_prompt})


# --- Publisher --------------------------------------------------------------------------------

async def start_publishing(state: PostState, config: RunnableConfig) -> dict:
    # A desk replayed after its publish committed (the ledger marks the post published in the same
    # transaction) finds the post published: nothing to move; publish_everywhere then replays from the ledger.
    await ledger.advance_post(thread_id_of(config), "publishing", actor="publisher", unless_in=("published",))
    return {}


@traced_desk("publisher", flush_after=True)
async def publish(state: PostState, config: RunnableConfig) -> dict:
    run = RunConfig.from_runnable_config(config)  # the run's overrides, read once
    from storage.connect import get_database

    tid, draft = thread_id_of(config), state.latest_draft
    review = state.latest_review
    refused = await ledger.publication_refused(tid, draft, default_policy=get_settings().approval_policy)
    if refused is not None:
        await ledger.record_desk_event(tid, actor="publisher", kind="publish_refused",
                                       detail={"draft_version": draft.version, "hash": draft.content_hash})
        return await _fail_post(tid, "publisher", refused)
    item = publisher.render_post(tid, draft, state.research, requester=state.requester,
                                 scores=review.verdict.scores if review and review.verdict else None,
                                 front_matter_extra=get_settings().publish_front_matter)
    try:
        done = await publish_everywhere(await get_database(), destinations_from_settings(get_settings()),
                                        thread_id=tid, item=item, draft_hash=draft.content_hash)
    except PublishFailed as err:
        # The destinations before it keep their ledger rows: a retry publishes only the missing ones.
        return await _fail_post(tid, "publisher", str(err))
    (row, now), rest = done[0], done[1:]
    pub = {"publish_key": row["publish_key"], "destination": row["destination"], "location": row["location"],
           "draft_hash": row["draft_hash"], "title": row["title"], "replayed": not now,
           "destinations": [{"destination": r["destination"], "location": r["location"], "publish_key": r["publish_key"],
                             "replayed": not fresh} for r, fresh in done]}
    if rest:
        await ledger.record_desk_event(tid, actor="publisher", kind="published_everywhere",
                                       detail={"destinations": pub["destinations"]})
    await score_post_cost(tid, budget_usd=run.run_budget_usd)
    return {"publication": pub, "outcome": "published"}


def _desk(name: str, *steps, checkpointed: bool = False, branches: dict | None = None) -> StateGraph:
    """A desk's subgraph: its steps in order. `branches` maps a step to (router, targets) for a
    conditional exit. checkpointed: the desk keeps its own checkpoints (namespace "<desk>:<task>"),
    so each step is a checkpoint in Studio's state history and a desk cut off midway resumes at its
    last finished step (an LLM call done is not made again); otherwise (the publisher) the
    supervisor graph's checkpoint after the desk holds its output and a cut-off desk reruns."""
    g = StateGraph(PostState)
    prev = START
    branches = branches or {}
    for fn in steps:
        g.add_node(fn.__name__, fn)
        if prev is not None:
            g.add_edge(prev, fn.__name__)
        if fn.__name__ in branches:
            router, targets = branches[fn.__name__]
            g.add_conditional_edges(fn.__name__, router, targets)
            prev = None  # the router leads on
        else:
            prev = fn.__name__
    if prev is not None:
        g.add_edge(prev, END)
    return g.compile(name=name, checkpointer=None if checkpointed else False)


researcher_desk = _desk("researcher", start_research, plan, retrieve, fetch, gather, checkpointed=True)
writer_desk = _desk("writer", start_drafting, outline, write, checkpointed=True)
editor_desk = _desk("editor", start_editing, check_citations, judge, checkpointed=True,
                    branches={"check_citations": (after_citations, {"judge": "judge", END: END})})
publisher_desk = _desk("publisher", start_publishing, publish)
