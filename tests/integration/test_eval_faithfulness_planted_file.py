"""`newsroom eval-faithfulness --planted-file F` scores another planted set than planted.jsonl (the
held-out one), through the real CLI and the real rules (no LLM call, no support check)."""
from __future__ import annotations


def test_eval_faithfulness_scores_another_planted_file(tmp_path):
    """`--planted-file`: that set is scored whole (no tuning/reported halves), the default stays planted.jsonl."""
    import json

    from click.testing import CliRunner

    from service.cli import main

    source = "Llama 3.1 8B has 32 query heads and 8 KV heads, so four query heads share each KV head."
    sources = [{"n": 1, "note": "grouped-query-attention", "title": "Grouped-query attention (GQA)",
                "heading": "Llama 3.1 8B in numbers", "excerpt": source}]
    clean = "Llama 3.1 8B keeps 8 KV heads for its 32 query heads [1]."
    wrong = "Llama 3.1 8B keeps 16 KV heads for its 32 query heads [1]."
    rows = [{"id": "x-clean", "draft": "x", "kind": "clean", "topic": "GQA", "sources": sources, "body": clean,
             "planted_sentence": None},
            {"id": "x-wrong_number", "draft": "x", "kind": "wrong_number", "topic": "", "sources": sources,
             "body": wrong, "planted_sentence": wrong}]
    path = tmp_path / "planted-small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(main, ["eval-faithfulness", "--no-live", "--rules-only", "--no-support",
                                       "--planted-file", str(path)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["planted"]["drafts"] == 2 and out["planted"]["planted"] == 1
    assert out["planted"]["file"] == str(path) and "tuning" not in out["planted"]
    assert "planted-error set planted-small.jsonl: 2 drafts" in result.output
