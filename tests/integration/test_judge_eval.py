"""`newsroom eval-judge`: the labelled set, the statistics, the verdict cache, and the command end to end
against a judge over real HTTP (the scripted OpenAI/Anthropic-compatible server), no database needed."""
from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents import prompts as prompt_registry
from agents.editor import DIMENSIONS, approve_or_revise
from config import get_settings
from evals.judge import metrics
from evals.judge.labels import DEFECTS, LabelError, guide_violations, load_set, parse_draft
from evals.judge.run import decoding, prompt_sha
from evals.judge.verdicts import Decoding, JudgeIdentity, VerdictRecord, VerdictStore, verdict_key
from tests.scripted_llm import Reply, ScriptedLLM

JUDGE = "newsroom-judge"
ITEMS = load_set()
BROKEN_JSON = "03-flash-attention-shallow"  # the scripted judge answers these two badly
OUT_OF_RANGE = "10-rope-shallow"


# --- the labelled set --------------------------------------------------------------------------

def test_the_set_is_large_enough_and_follows_its_guide():
    assert len(ITEMS) >= 60
    defects = {d: sum(i.defect == d for i in ITEMS) for d in DEFECTS}
    assert defects["none"] >= 20
    assert all(defects[d] >= 8 for d in ("wrong_number", "invented_mechanism", "overclaiming", "shallow",
                                         "wrong_audience")), defects
    assert {i.id: guide_violations(i) for i in ITEMS if guide_violations(i)} == {}
    for i in ITEMS:
        assert all(len(r) >= 8 for r in i.reasons.model_dump().values())
        s = i.scores
        assert i.human_decision == approve_or_revise(s.technical_accuracy, s.calibration, s.mechanistic_depth,
                                                     s.audience_calibration, i.flag)
    decisions = [i.human_decision for i in ITEMS]
    assert 0.3 < decisions.count("approve") / len(decisions) < 0.7
    # the gate's boundaries are in the set: mean exactly 3.25 approves, both floors exactly at 3
    assert any(i.human_mean == 3.25 and i.human_decision == "approve" for i in ITEMS)
    assert any(i.scores.technical_accuracy == 3 and i.scores.calibration == 3 and i.human_decision == "approve"
               for i in ITEMS)
    assert any(i.human_mean == 3.0 and i.flag == "none" and min(i.human_scores.values()) >= 3 for i in ITEMS)


def test_notes_are_the_named_corpus_notes_quoted_as_the_researcher_quotes():
    item = next(i for i in ITEMS if i.id == "01-gqa-good")
    notes = item.rendered_notes()
    assert notes.startswith('[1] <source title="Grouped-query attention (GQA)">')
    assert "[2] <source" in notes and "131,072 bytes" in notes and notes.count("</source>") == 2


@pytest.mark.parametrize("front,expected", [
    ("topic = 'x'", "expected TOML front matter"),
    ("+++\ntopic = \"GQA\"\nsources = [\"grouped-query-attention.md\"]\ndefect = \"none\"\nflag = \"none\"\n"
     "[scores]\ntechnical_accuracy = 6\ncalibration = 5\nmechanistic_depth = 5\naudience_calibration = 5\n"
     "[reasons]\ntechnical_accuracy = \"all fine here\"\ncalibration = \"all fine here\"\n"
     "mechanistic_depth = \"all fine here\"\naudience_calibration = \"all fine here\"\n+++\n# A title\n\n" + "body " * 20,
     "scores.technical_accuracy"),
    ("+++\ntopic = \"GQA\"\nsources = [\"grouped-query-attention.md\"]\ndefect = \"wrong_number\"\nflag = \"none\"\n"
     "[scores]\ntechnical_accuracy = 2\ncalibration = 2\nmechanistic_depth = 5\naudience_calibration = 5\n"
     "[reasons]\ntechnical_accuracy = \"all fine here\"\ncalibration = \"all fine here\"\n"
     "mechanistic_depth = \"all fine here\"\naudience_calibration = \"all fine here\"\n+++\n# A title\n\n" + "body " * 20,
     "needs `planted`"),
])
def test_a_bad_draft_file_is_refused_with_the_reason(front, expected):
    with pytest.raises(LabelError, match=re.escape(expected)):
        parse_draft(front, "bad-draft")


def test_a_missing_source_note_is_refused(tmp_path):
    text = (Path(__file__).parents[2] / "evals/judge/drafts/01-gqa-good.md").read_text()
    (tmp_path / "x.md").write_text(text.replace("kv-cache-arithmetic.md", "no-such-note.md"))
    with pytest.raises(LabelError, match="no-such-note.md"):
        load_set(tmp_path)


# --- the statistics --------------------------------------------------------------------------------

def test_pearson_mae_kappa_match_hand_computed_values():
    x, y = [1, 2, 3, 4, 5], [2, 4, 5, 4, 5]
    # r = cov/(sx sy): deviations x (-2..2), y (-2, 0, 1, 0, 1); sum xy = 4+0+0+0+2 = 6; sxx = 10, syy = 6
    assert metrics.pearson(x, y) == pytest.approx(6 / math.sqrt(10 * 6))
    assert metrics.mae(x, y) == pytest.approx((1 + 2 + 2 + 0 + 0) / 5)
    assert metrics.pearson([3, 3, 3], [1, 2, 3]) is None  # a constant judge has no correlation
    # kappa: 10 items, 7 agree; truth 6 approve / 4 reject, judged 5 / 5 -> p_e = (6*5 + 4*5)/100 = 0.5
    truth = ["approve"] * 6 + ["reject"] * 4
    judged = ["approve"] * 4 + ["reject"] * 2 + ["reject"] * 3 + ["approve"]
    assert metrics.accuracy(truth, judged) == pytest.approx(0.7)
    assert metrics.cohen_kappa(truth, judged) == pytest.approx((0.7 - 0.5) / 0.5)
    assert metrics.cohen_kappa(["approve"] * 3, ["approve"] * 3) is None
    assert metrics.precision_recall(truth, judged, "reject") == (pytest.approx(3 / 5), pytest.approx(3 / 4))
    assert metrics.percentile([5, 1, 3, 2, 4], 50) == 3 and metrics.percentile([], 50) is None


# --- the verdict cache -------------------------------------------------------------------------------

def _identity(**over) -> JudgeIdentity:
    return JudgeIdentity(**{"provider": "vllm", "model": "m", "endpoint": "http://x/v1", **over})


def test_the_key_changes_with_everything_that_changes_the_reply():
    dec = decoding(400)
    base = dict(item_id="a", input_sha="i", prompt_ref="editor.judge@1", prompt_sha="p", judge=_identity(), decoding=dec)
    key = verdict_key(**base)
    assert verdict_key(**base) == key
    variants = [dict(item_id="b"), dict(input_sha="j"), dict(prompt_ref="editor.judge@2"), dict(prompt_sha="q"),
                dict(judge=_identity(model="n")), dict(judge=_identity(weights="other.gguf (1 bytes)")),
                dict(decoding=Decoding(temperature=0.0, max_tokens=401, schema_sha=dec.schema_sha)),
                dict(decoding=Decoding(temperature=0.7, max_tokens=400, schema_sha=dec.schema_sha))]
    assert len({verdict_key(**{**base, **v}) for v in variants} | {key}) == len(variants) + 1


def test_the_store_appends_and_survives_a_cut_last_line(tmp_path):
    path = tmp_path / "v.jsonl"
    rec = VerdictRecord(key="k1", item_id="a", input_sha="i", prompt_ref="editor.judge@1", prompt_sha="p",
                        judge=_identity(), decoding=decoding(400), raw_text='{"x": 1}')
    store = VerdictStore(path)
    store.add(rec)
    store.add(rec.model_copy(update={"key": "k2", "item_id": "b"}))
    with open(path, "a") as fh:
        fh.write('{"key": "k3", "item_id"')  # a run killed mid-write
    again = VerdictStore(path)
    assert set(again.records) == {"k1", "k2"} and again.get("k1").raw_text == '{"x": 1}'
    assert again.judges() == [_identity()]


# --- the command, against a judge over HTTP ------------------------------------------------------------

def _labels_of(req) -> dict | str:
    """The scripted judge: the human labels of the draft it is shown (a perfect judge), except two."""
    item = next(i for i in ITEMS if i.body in req.prompt)  # variants of one post share a title, not a body
    if item.id == BROKEN_JSON:
        return '{"technical_accuracy": 4, "calibration": '
    verdict = {**item.human_scores, "flag": item.flag, "reasoning": item.reasons.model_dump()}
    if item.id == OUT_OF_RANGE:
        verdict["calibration"] = 1234567890  # what SmolLM2 really emitted once
    return verdict


@pytest.fixture(scope="module")
def judge_server():
    with ScriptedLLM(models=[JUDGE, "newsroom-writer"]) as llm:
        yield llm


@pytest.fixture
def env(judge_server, monkeypatch, tmp_path):
    from config import reset_settings_cache

    judge_server.reset()
    judge_server.on_chat(lambda req: Reply.json(_labels_of(req), tokens_in=900, tokens_out=120), model=JUDGE)
    judge_server.on_chat(lambda req: Reply.json(_labels_of(req), tokens_in=900, tokens_out=120),
                         model="claude-sonnet-4-6")
    for k, v in {"NEWSROOM_JUDGE_PROVIDER": "vllm", "NEWSROOM_JUDGE_BASE_URL": judge_server.base_url,
                 "NEWSROOM_JUDGE_MODEL": JUDGE, "NEWSROOM_DATA_DIR": str(tmp_path / "state"),
                 "ANTHROPIC_BASE_URL": judge_server.anthropic_base_url}.items():
        monkeypatch.setenv(k, v)
    for k in ("ANTHROPIC_API_KEY", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "NEWSROOM_JUDGE_PROMPT"):
        monkeypatch.delenv(k, raising=False)
    reset_settings_cache()
    yield judge_server
    reset_settings_cache()


def run_cli(*args: str) -> tuple[int, str, dict | None]:
    from service.cli import main

    result = CliRunner().invoke(main, ["eval-judge", "--quiet", *args], catch_exceptions=False)
    out = result.output
    last = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        doc = json.loads(last)
    except ValueError:
        doc = None
    return result.exit_code, out, doc


def test_a_judge_over_http_is_measured_and_its_verdicts_cached(env, tmp_path):
    cache = tmp_path / "verdicts.jsonl"
    code, out, doc = run_cli("--route", "vllm", "--cache", str(cache), "--no-langfuse")
    assert code == 0, out
    (run,) = doc["runs"]
    assert (doc["items"], run["items"], run["valid"]) == (len(ITEMS), len(ITEMS), len(ITEMS) - 2)
    assert run["invalid_rate"] == round(2 / len(ITEMS), 3)
    # a perfect judge on the valid verdicts: every r is 1, no error, full decision agreement
    assert all(run["r"][d] == 1.0 for d in (*DIMENSIONS, "overall")) and run["mae"]["overall"] == 0.0
    assert run["decision"]["accuracy"] == 1.0 and run["decision"]["kappa"] == 1.0
    assert run["decision"]["accuracy_all"] == round((len(ITEMS) - 2) / len(ITEMS), 3)
    assert run["flag"]["precision"] == 1.0 and run["flag"]["recall"] == 1.0
    assert run["calls"] == len(ITEMS) and run["cache_hits"] == 0 and run["goal_met"] is True
    default = get_settings().judge_prompt  # the configured version, when --prompt names none
    assert run["judge"] == f"vllm:{JUDGE}" and run["prompt"] == default and run["max_tokens"] == 400
    assert "r technical_accuracy" in out and "decision kappa (valid)" in out and "flag precision / recall" in out
    # the Editor's own request: its prompt version, the verdict schema in vLLM's structured-output form
    reqs = env.requests_for(JUDGE)
    assert len(reqs) == len(ITEMS)
    system = prompt_registry.load_prompt(default).system.split("{")[0].strip()
    assert all(r.messages[0]["content"].startswith(system) for r in reqs)
    assert all(r.response_format["type"] == "json_schema" for r in reqs)
    # the hardened prompt: the draft in its own delimited data block, a fresh delimiter per call
    delimiters = {re.search(r"<<<(DATA-[0-9a-f]+) draft>>>", r.prompt).group(1) for r in reqs}
    assert len(delimiters) == len(reqs)
    lines = cache.read_text().splitlines()
    assert len(lines) == len(ITEMS)
    assert {json.loads(ln)["prompt_ref"] for ln in lines} == {default}

    # Re-scoring reads the cache: the same figures, no model call (with or without --rescore).
    for extra in ((), ("--rescore",)):
        code, out, again = run_cli("--route", "vllm", "--cache", str(cache), "--no-langfuse", *extra)
        assert code == 0, out
        assert len(env.requests_for(JUDGE)) == len(ITEMS)
        assert again["runs"][0]["calls"] == 0 and again["runs"][0]["cache_hits"] == len(ITEMS)
        assert {k: v for k, v in again["runs"][0].items() if k not in ("calls", "cache_hits")} == \
               {k: v for k, v in run.items() if k not in ("calls", "cache_hits")}


def test_a_changed_prompt_text_never_reuses_old_verdicts(env, tmp_path, monkeypatch):
    cache = tmp_path / "verdicts.jsonl"
    assert run_cli("--route", "vllm", "--cache", str(cache), "--no-langfuse", "--only", "shallow")[0] == 0
    first = len(env.requests_for(JUDGE))
    default = get_settings().judge_prompt
    old = prompt_registry.load_prompt(default)
    before = prompt_sha(default)
    edited = replace(old, system=old.system.replace("calibrated rubric", "calibrated rubric (edited)"))
    monkeypatch.setitem(prompt_registry._LOADED, default, edited)  # an edit in place, same name@version
    assert prompt_sha(default) != before
    code, out, doc = run_cli("--route", "vllm", "--cache", str(cache), "--no-langfuse", "--only", "shallow")
    assert code == 0, out
    assert doc["runs"][0]["calls"] == first and len(env.requests_for(JUDGE)) == 2 * first
    assert "(edited)" in env.requests_for(JUDGE)[-1].messages[0]["content"]


def test_prompt_versions_and_judges_side_by_side_in_one_run(env, tmp_path, monkeypatch):
    """--prompt editor.judge@1 --prompt editor.judge@2 and --route X --route Y: every combination is a
    column of one report; 'all' names every judge prompt version in the registry."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-" + "x" * 20)
    monkeypatch.setenv("NEWSROOM_LLM_PRICES_JSON", json.dumps({"claude-sonnet-4-6": [3.0, 15.0]}))
    from config import reset_settings_cache

    reset_settings_cache()
    code, out, doc = run_cli("--route", "vllm", "--route", "anthropic", "--prompt", "editor.judge@1",
                             "--prompt", "editor.judge@2", "--cache", str(tmp_path / "v.jsonl"), "--no-langfuse",
                             "--only", "none")
    assert code == 0, out
    cols = [(r["judge"], r["prompt"]) for r in doc["runs"]]
    assert cols == [(f"vllm:{JUDGE}", "editor.judge@1"), (f"vllm:{JUDGE}", "editor.judge@2"),
                    ("anthropic:claude-sonnet-4-6", "editor.judge@1"), ("anthropic:claude-sonnet-4-6", "editor.judge@2")]
    header = out.splitlines()[1]
    assert "editor.judge@1" in header and "editor.judge@2" in header
    n = sum(i.defect == "none" for i in ITEMS)
    anthropic_calls = [r for r in env.requests if r.api == "anthropic"]
    assert len(anthropic_calls) == 2 * n and all(r.tools for r in anthropic_calls)  # a forced tool call
    # @1 interpolates the draft into one message; @2 fences it in a data block of its own
    vllm_calls = env.requests_for(JUDGE)
    fenced = [r for r in vllm_calls if re.search(r"<<<DATA-[0-9a-f]+ draft>>>", r.prompt)]
    assert len(vllm_calls) == 2 * n and len(fenced) == n and all(len(r.messages) == 5 for r in fenced)
    claude = doc["runs"][2]
    assert claude["cost_usd"] == pytest.approx(n * (900 * 3.0 + 120 * 15.0) / 1e6, abs=1e-6)
    assert doc["runs"][0]["cost_usd"] == 0.0  # a self-hosted model has no per-token price
    # 'all' = every version, from the cache now: no new call
    code, out, again = run_cli("--route", "vllm", "--prompt", "all", "--cache", str(tmp_path / "v.jsonl"),
                               "--no-langfuse", "--only", "none")
    assert code == 0 and [r["prompt"] for r in again["runs"]] == ["editor.judge@1", "editor.judge@2"]
    assert all(r["calls"] == 0 for r in again["runs"]) and len(env.requests_for(JUDGE)) == 2 * n


def test_errors_a_user_can_act_on(env, tmp_path):
    code, out, _ = run_cli("--route", "anthropic", "--no-langfuse")
    assert code != 0 and "ANTHROPIC_API_KEY=... newsroom eval-judge --route anthropic" in out
    code, out, _ = run_cli("--route", "vllm", "--prompt", "editor.judge@99", "--no-langfuse")
    assert code != 0 and "editor.judge@99" in out and "available" in out
    code, out, _ = run_cli("--route", "vllm", "--prompt", "writer.draft@1", "--no-langfuse")
    assert code != 0 and "name a judge prompt version" in out
    code, out, _ = run_cli("--route", "recorded", "--recorded", str(tmp_path / "none.jsonl"))
    assert code != 0 and "no recorded verdicts" in out
    code, out, _ = run_cli("--route", "vllm", "--only", "no-such-item", "--no-langfuse")
    assert code != 0 and "matches no labelled draft" in out


def test_a_judge_that_is_down_is_reported_and_nothing_is_cached(env, tmp_path, monkeypatch):
    from config import reset_settings_cache

    monkeypatch.setenv("NEWSROOM_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens on port 9
    monkeypatch.setenv("NEWSROOM_LLM_MAX_ATTEMPTS", "1")
    reset_settings_cache()
    cache = tmp_path / "v.jsonl"
    code, out, doc = run_cli("--route", "vllm", "--cache", str(cache), "--no-langfuse", "--only", "01-gqa-good")
    assert code == 1
    assert doc["runs"][0]["unavailable"] == 1 and doc["runs"][0]["missing"] == 1
    assert "call(s) failed (not recorded; run again)" in out
    assert not cache.exists() or cache.read_text() == ""
