"""The writer eval that promote-adapter runs: drafts scored for faithfulness, and with --judge the
judge route asked with the configured judge prompt (a scripted server over real HTTP)."""
from __future__ import annotations

from config import get_settings
from evals.training.writer_eval import eval_items, evaluate_writer
from tests.engine_fixtures import JUDGE, PASSING, WRITER


async def test_judged_writer_eval_uses_the_configured_judge_prompt(db, llm):
    from agents import prompts
    from tools.llm import get_gateway

    items = eval_items(2)
    report = await evaluate_writer(get_gateway(), WRITER, items, judge=True)
    judged = llm.requests_for(JUDGE)
    assert len(judged) == len(items) == len(report.items)
    # every item judged by the scripted judge's passing verdict, none fell back to the error score
    assert all("judge_error" not in row for row in report.items), report.items
    expected_mean = sum(PASSING[d] for d in ("technical_accuracy", "calibration", "mechanistic_depth",
                                             "audience_calibration")) / 4
    assert report.judge_mean == expected_mean
    # the judge saw the prompt NEWSROOM_JUDGE_PROMPT names (its system text), with the item's topic
    system = prompts.load_prompt(get_settings().judge_prompt).system
    assert system.split("\n")[0].strip() in judged[0].prompt
    assert items[0].topic in judged[0].prompt
