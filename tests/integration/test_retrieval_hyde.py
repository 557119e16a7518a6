"""HyDE through the real LLM gateway against the scripted OpenAI-compatible server: one LLM call
per query, the hypothesis steers the search, and a failing LLM degrades to the plain query."""
from __future__ import annotations

import pytest

from tests.retrieval_helpers import write_notes
from tests.scripted_llm import Fault, ScriptedLLM
from tools import retrieval
from tools.ingest import ingest_paths
from tools.retrieval import HYDE_SYSTEM, Retriever

HYDE_MODEL = "hyde-test-model"
NOTES = {
    "gqa.md": "# Grouped-query attention\n\nLlama 3.1 8B shares each key/value head between four query heads, "
              "so its KV cache is four times smaller than with multi-head attention.\n",
    "breaker.md": "# Circuit breakers\n\nA circuit breaker opens after consecutive failures of an endpoint, fails "
                  "fast during a cooldown, then lets one half-open probe through before closing again.\n",
    "dpo.md": "# Direct preference optimization\n\nDPO trains on chosen and rejected answers with a classification "
              "loss against a frozen reference model, without a reward model or PPO.\n",
    "hnsw.md": "# HNSW\n\nAn HNSW index is a layered proximity graph; ef_search sets the candidate list size.\n",
}


@pytest.fixture
def hyde_llm(monkeypatch, pg_url):
    """The gateway's "hyde" role pointed at a scripted server (settings from the environment)."""
    from config import reset_settings_cache
    from tools.llm import reset_gateway

    with ScriptedLLM(models=[HYDE_MODEL]) as llm:
        monkeypatch.setenv("NEWSROOM_LLM_BASE_URL", llm.base_url)
        monkeypatch.setenv("NEWSROOM_LLM_PROVIDER", "llamacpp")
        monkeypatch.setenv("NEWSROOM_HYDE_MODEL", HYDE_MODEL)
        monkeypatch.setenv("NEWSROOM_LLM_MAX_ATTEMPTS", "1")
        monkeypatch.delenv("NEWSROOM_RETRIEVAL_HYDE", raising=False)
        reset_settings_cache()
        reset_gateway()
        yield llm
        monkeypatch.undo()
        reset_settings_cache()
        reset_gateway()


@pytest.fixture(scope="module")
async def corpus_dir(module_db, embedder, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("hyde") / "notes"
    write_notes(folder, NOTES)
    await ingest_paths([folder], db=module_db, embedder=embedder)
    return folder


@pytest.fixture
def corpus(corpus_dir, module_db, embedder, monkeypatch):  # noqa: F811
    # The module-level seam (what the researcher desk calls) on this private corpus.
    monkeypatch.setattr(retrieval, "_default", Retriever(db=module_db, embedder=embedder))
    return corpus_dir


def _hyde_requests(llm):
    return [r for r in llm.requests if r.model == HYDE_MODEL]


async def test_hyde_calls_the_llm_once_per_query(hyde_llm, corpus):
    hyde_llm.on_chat(lambda req: f"A hypothetical note answering: {req.messages[-1]['content']}", model=HYDE_MODEL)
    queries = ["How much smaller is the KV cache with GQA?", "What does a half-open breaker do?",
               "Why is DPO simpler than PPO?"]
    for q in queries:
        got = await retrieval.retrieve(q, k=2)  # HyDE is on by default
        assert got and retrieval.get_retriever().last.hypothesis.endswith(q)
    reqs = _hyde_requests(hyde_llm)
    assert len(reqs) == len(queries)
    assert [r.messages[-1]["content"] for r in reqs] == queries
    assert all(r.messages[0]["role"] == "system" and r.messages[0]["content"] == HYDE_SYSTEM for r in reqs)

    await retrieval.retrieve(queries[0], k=2, hyde=False)
    assert len(_hyde_requests(hyde_llm)) == len(queries), "hyde=False makes no LLM call"


async def test_the_hypothesis_steers_the_search(hyde_llm, corpus):
    vague = "Which mechanism should I read about next?"
    hyde_llm.on_chat("A circuit breaker stops calling a failing endpoint after consecutive failures and "
                     "probes it again in a half-open state after the cooldown.", model=HYDE_MODEL)
    with_hyde = await retrieval.retrieve(vague, k=1, hyde=True)
    assert with_hyde[0].source_path.endswith("breaker.md")
    hyde_llm.reset()
    hyde_llm.on_chat("Grouped-query attention lets four query heads share one key/value head, cutting the KV "
                     "cache of Llama 3.1 8B by four.", model=HYDE_MODEL)
    assert (await retrieval.retrieve(vague, k=1, hyde=True))[0].source_path.endswith("gqa.md")


async def test_a_failing_llm_falls_back_to_the_plain_query(hyde_llm, corpus):
    hyde_llm.script(Fault.server_error(503), model=HYDE_MODEL)
    got = await retrieval.retrieve("KV cache with grouped-query attention", k=2)
    trace = retrieval.get_retriever().last
    assert got[0].source_path.endswith("gqa.md")
    assert trace.hyde_error and trace.hypothesis is None
    assert len(_hyde_requests(hyde_llm)) == 1


async def test_hyde_is_switchable_by_setting(hyde_llm, corpus, monkeypatch):
    from config import reset_settings_cache

    hyde_llm.on_chat("unused", model=HYDE_MODEL)
    monkeypatch.setenv("NEWSROOM_RETRIEVAL_HYDE", "false")
    monkeypatch.setenv("NEWSROOM_RETRIEVAL_HYBRID", "true")
    reset_settings_cache()
    got = await retrieval.retrieve("circuit breaker cooldown", k=2)
    assert got[0].source_path.endswith("breaker.md")
    assert _hyde_requests(hyde_llm) == [], "NEWSROOM_RETRIEVAL_HYDE=false: no LLM call"
    assert retrieval.get_retriever().last.text_hits >= 1, "NEWSROOM_RETRIEVAL_HYBRID=true: full-text arm ran"
