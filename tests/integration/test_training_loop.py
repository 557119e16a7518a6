"""The decision-to-training loop without vLLM: decided posts through the real graph (scripted LLM over
HTTP, embedded PostgreSQL) -> draft rows -> `newsroom export-training` -> `newsroom train-adapter`
(a real LoRA step on SmolLM2-135M, converted from its packaged GGUF) -> the adapter registry ->
the writer route following the promoted adapter. The vLLM half is tests/e2e/test_vllm_tier.py."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.training.writer_eval import beats, eval_items, score_draft
from storage import posts, training
from tests.engine_fixtures import WRITER, reset_runtime
from tests.training_helpers import FIRST_DRAFT, make_decided_posts, script_writer
from tools.training_data import build_export

ROOT = Path(__file__).resolve().parents[2]
needs_train = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("peft", "gguf", "transformers")),
    reason="the train extra is not installed (make test installs it: pip install -e '.[train]')")


@pytest.fixture(scope="module")
async def decided(db, scripted_llm):
    scripted_llm.reset()
    script_writer(scripted_llm)
    reset_runtime()
    made = await make_decided_posts(("KV cache arithmetic", "Grouped-query attention", "A post to reject"))
    yield made
    scripted_llm.reset()


async def _export_for(db, threads, out_dir: Path) -> dict:
    from tools.training_data import export_training

    manifest = await export_training(db, out_dir)
    mine = set(threads)
    for name in ("sft.jsonl", "dpo.jsonl"):  # the session database holds other tests' posts too
        rows = [json.loads(x) for x in (out_dir / name).read_text().splitlines()]
        (out_dir / name).write_text("".join(json.dumps(r) + "\n" for r in rows if r["provenance"]["thread_id"] in mine))
    return manifest


async def test_each_draft_is_kept_with_the_model_that_wrote_it(db, decided):
    tid = decided["published"][0]
    rows = await training.drafts_of(db, tid)
    assert [r["version"] for r in rows] == [1, 2]
    # (the Writer desk drops [n] markers that name no source in the notes: these notes are ungrounded)
    assert rows[0]["body"].startswith("This topic matters") and rows[1]["body"].startswith("According to the notes")
    assert {r["model"] for r in rows} == {WRITER} and rows[1]["reason"] == "human_feedback"
    assert rows[0]["prompt"] == "writer.draft@4" and rows[1]["prompt"] == "writer.revise@3"
    events = [e for e in await posts.list_events(db, tid) if e["kind"] == "draft_written"]
    assert [e["detail"]["hash"] for e in events] == [r["content_hash"] for r in rows]


async def test_export_writes_sft_and_dpo_with_provenance(db, decided, tmp_path):
    await _export_for(db, decided["published"] + decided["rejected"], tmp_path)
    sft = [json.loads(x) for x in (tmp_path / "sft.jsonl").read_text().splitlines()]
    dpo = [json.loads(x) for x in (tmp_path / "dpo.jsonl").read_text().splitlines()]
    assert sorted(r["provenance"]["thread_id"] for r in sft) == sorted(decided["published"])
    ex = next(r for r in sft if r["provenance"]["thread_id"] == decided["published"][0])
    roles = [m["role"] for m in ex["messages"]]
    assert roles[0] == "system" and roles[-1] == "assistant" and set(roles[1:-1]) == {"user"}
    request = "\n".join(m["content"] for m in ex["messages"][1:-1])  # the data blocks, then the instructions
    assert " topic>>>\nKV cache arithmetic\n<<<END " in request and " notes>>>\n" in request
    kept = await training.drafts_of(db, decided["published"][0])
    first_text, approved_text = (f"# {r['title']}\n\n{r['body']}" for r in kept)
    assert ex["messages"][-1]["content"] == approved_text and approved_text.startswith("# KV cache arithmetic")
    prov = ex["provenance"]["chosen"]
    decisions = [e for e in await posts.list_events(db, decided["published"][0]) if e["kind"] == "human_decision"]
    approve = next(e for e in decisions if e["detail"]["decision"] == "approve")
    assert prov["version"] == 2 and prov["reviewer"] == "rita" and prov["payload_hash"] == approve["detail"]["payload_hash"]
    assert prov["published"] is True and prov["model"] == WRITER
    # one pair per published post: the approved revision over the draft the human sent back
    assert sorted(p["provenance"]["thread_id"] for p in dpo) == sorted(decided["published"])
    pair = next(p for p in dpo if p["provenance"]["thread_id"] == decided["published"][0])
    assert pair["chosen"] == ex["messages"][-1]["content"]
    assert pair["rejected"] == first_text == FIRST_DRAFT.format(topic="KV cache arithmetic")
    assert pair["prompt"] == ex["messages"][:-1]
    rej = pair["provenance"]["rejected"]
    assert rej["version"] == 1 and rej["decision"] == "revise" and rej["feedback"] == "cite the notes, give numbers"
    revise = next(e for e in decisions if e["detail"]["decision"] == "revise")
    assert rej["payload_hash"] == revise["detail"]["payload_hash"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    skipped = {s["thread_id"]: s["reason"] for s in manifest["skipped"]}
    assert "no approved text" in skipped[decided["rejected"][0]]


def test_export_prefers_a_human_edit_and_skips_posts_without_draft_rows():
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]

    def d(v, author="writer", body="b"):
        return {"thread_id": "t", "version": v, "title": f"T{v}", "body": body, "content_hash": f"h{v}", "model": "m",
                "prompt": "p", "reason": "first", "author": author, "messages": prompt if v == 1 else []}

    data = {"posts": [{"thread_id": "t", "topic": "x", "status": "published"},
                      {"thread_id": "old", "topic": "y", "status": "published"}],
            "drafts": [d(1), d(2, author="editor:ann", body="edited")],
            "decisions": [{"thread_id": "t", "decision": "approve", "draft_version": "1", "reviewer": "ann",
                           "at": "now", "payload_hash": "ph", "feedback": None}],
            "publications": [{"thread_id": "t", "draft_hash": "h2"}]}
    out = build_export(data)
    assert [r["messages"][-1]["content"] for r in out.sft] == ["# T2\n\nedited"]
    assert out.sft[0]["provenance"]["human_edited"] is True and out.sft[0]["provenance"]["chosen"]["published"]
    assert out.skipped == [{"thread_id": "old", "reason": "no draft rows (decided before drafts were kept)"}]


def test_promotion_rule_and_faithfulness_scoring():
    item = eval_items(1)[0]
    good = score_draft("Each token costs 131,072 bytes [2]. The cache dominates memory [1].", item)
    bad = score_draft("Each token costs 999 bytes [7].", item)
    assert good["cited"] and good["numbers_supported"] == 1.0 and good["faithfulness"] == 1.0
    assert not bad["cited"] and bad["numbers_supported"] == 0.0 and bad["faithfulness"] == 0.0
    assert beats({"faithfulness": 0.8}, {"faithfulness": 0.7})
    assert not beats({"faithfulness": 0.7}, {"faithfulness": 0.7})  # a tie is no win
    assert beats({"faithfulness": 0.7, "judge_mean": 3.5}, {"faithfulness": 0.7, "judge_mean": 3.0})
    assert not beats({"faithfulness": 0.6, "judge_mean": 5.0}, {"faithfulness": 0.7, "judge_mean": 1.0})


async def test_registry_keeps_one_promoted_adapter_per_family(db):
    for name in ("fam-a-1", "fam-a-2"):
        await training.register_adapter(db, name=name, family="fam-a", base_model="smollm2", path=f"/x/{name}",
                                        data_sha256="d", manifest={"examples": 1})
    first = await training.decide_adapter(db, "fam-a-1", promote=True, evaluation={"won": True})
    assert first["status"] == "promoted" and first["previous"] is None
    second = await training.decide_adapter(db, "fam-a-2", promote=True, evaluation={"won": True})
    assert second["previous"]["name"] == "fam-a-1"
    assert (await training.promoted_adapter(db, "fam-a"))["name"] == "fam-a-2"
    assert (await training.get_adapter(db, "fam-a-1"))["status"] == "retired"
    with pytest.raises(training.AdapterStateError, match="already promoted"):
        await training.decide_adapter(db, "fam-a-2", promote=True, evaluation={})
    with pytest.raises(training.AdapterStateError, match="already retired"):
        await training.register_adapter(db, name="fam-a-1", family="fam-a", base_model="smollm2", path="/y",
                                        data_sha256="d", manifest={})


async def test_writer_route_follows_the_promoted_adapter(db, llm, monkeypatch):
    """With NEWSROOM_WRITER_ADAPTER_REGISTRY the writer serves the family's promoted adapter when the
    endpoint lists it, and the draft records that adapter; unlisted, it stays on the family name."""
    from service.runner import start_post

    family, adapter = WRITER, "newsroom-writer-promoted-1"
    await training.register_adapter(db, name=adapter, family=family, base_model="smollm2", path="/a",
                                    data_sha256="d", manifest={})
    await training.decide_adapter(db, adapter, promote=True, evaluation={"won": True})
    monkeypatch.setenv("NEWSROOM_WRITER_ADAPTER_REGISTRY", "true")
    try:
        reset_runtime()
        snap = await start_post("Follow the registry, not listed")
        assert snap.interrupt["draft"]["model"] == family  # the scripted server does not list the adapter
        llm.models.append(adapter)
        llm.on_chat(lambda req: "# Adapter draft\n\nWritten by the promoted adapter [1].", model=adapter)
        reset_runtime()
        snap = await start_post("Follow the registry, listed")
        assert snap.interrupt["draft"]["model"] == adapter
        assert snap.interrupt["draft"]["title"] == "Adapter draft"
        assert (await training.drafts_of(db, snap.thread_id))[0]["model"] == adapter
    finally:
        await training.retire_adapter(db, adapter)  # the family has no promoted adapter for later tests
        if adapter in llm.models:
            llm.models.remove(adapter)
        monkeypatch.delenv("NEWSROOM_WRITER_ADAPTER_REGISTRY")
        reset_runtime()


@needs_train
@pytest.mark.timeout(1500)
async def test_train_adapter_from_the_export(db, decided, tmp_path, session_dir):
    """`newsroom export-training` then `newsroom train-adapter` (one real LoRA step, CPU): an adapter
    vLLM can load, its manifest, and a candidate in the registry."""
    out = tmp_path / "export"
    await _export_for(db, decided["published"], out)
    env = dict(os.environ, HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
    name = f"newsroom-writer-t{os.getpid()}"
    adapter_dir = tmp_path / "adapter"
    done = subprocess.run([sys.executable, "-m", "service.cli", "train-adapter", "--data", str(out / "sft.jsonl"),
                           "--name", name, "--out", str(adapter_dir), "--steps", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and cfg["lora_alpha"] == 16 and set(cfg["target_modules"]) == {"q_proj", "v_proj"}
    assert (adapter_dir / "adapter_model.safetensors").stat().st_size < 5_000_000
    m = json.loads((adapter_dir / "manifest.json").read_text())
    import hashlib

    assert m["base_model"] == "smollm2" and m["examples"] == 2 and m["steps"] == 1
    assert m["data"]["sha256"] == hashlib.sha256((out / "sft.jsonl").read_bytes()).hexdigest()
    assert m["loss_first"] > 0 and m["qlora"] is False
    row = await training.get_adapter(db, name)
    assert row["status"] == "candidate" and row["path"] == str(adapter_dir.resolve()) and row["family"] == WRITER
    # bad data is an error naming the line, nothing trained
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "x"}]}\n')
    refused = subprocess.run([sys.executable, "-m", "service.cli", "train-adapter", "--data", str(bad), "--name",
                              name + "-bad", "--no-register"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert refused.returncode != 0 and "bad.jsonl:1" in refused.stderr
