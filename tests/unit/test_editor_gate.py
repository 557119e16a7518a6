"""The Editor's decision function, table-driven on every boundary (DESIGN.md, curriculum Phase 11)."""
import pytest
from pydantic import ValidationError

from agents.editor import EditorVerdict, approve_or_revise, decide, next_step_after_review

# (technical_accuracy, calibration, mechanistic_depth, audience_calibration, flag, expected)
CASES = [
    # the gated dimensions at 3.0 pass, 2.99 fails
    (3.0, 3.5, 3.5, 3.5, "none", "approve"),
    (2.99, 3.5, 3.5, 3.5, "none", "reject"),
    (3.5, 3.0, 3.5, 3.5, "none", "approve"),
    (3.5, 2.99, 3.5, 3.5, "none", "reject"),
    (2.99, 2.99, 5.0, 5.0, "none", "reject"),  # mean 3.995 but both gates fail
    (2.0, 5.0, 5.0, 5.0, "none", "reject"),    # mean 4.25, accuracy gate fails
    # the mean: 3.25 passes, 3.24 fails
    (3.0, 3.0, 3.0, 4.0, "none", "approve"),   # mean exactly 3.25
    (3.0, 3.0, 3.0, 3.96, "none", "reject"),   # mean 3.24
    (3.0, 3.0, 3.5, 3.5, "none", "approve"),   # mean 3.25
    (3.0, 3.0, 3.49, 3.5, "none", "reject"),   # mean 3.2475
    (3.0, 3.0, 3.0, 3.0, "none", "reject"),    # gates pass, mean 3.0
    (5.0, 5.0, 5.0, 5.0, "none", "approve"),
    # the flag rejects whatever the scores
    (5.0, 5.0, 5.0, 5.0, "confident_hallucination", "reject"),
    (3.0, 3.0, 3.0, 4.0, "confident_hallucination", "reject"),
]


@pytest.mark.parametrize("ta,cal,depth,aud,flag,expected", CASES)
def test_gate_boundaries(ta, cal, depth, aud, flag, expected):
    assert approve_or_revise(ta, cal, depth, aud, flag) == expected


def _verdict(**over):
    base = dict(technical_accuracy=4, calibration=4, mechanistic_depth=3, audience_calibration=3, flag="none",
                reasoning=dict(technical_accuracy="a", calibration="b", mechanistic_depth="c", audience_calibration="d"))
    base.update(over)
    return EditorVerdict.model_validate(base)


def test_verdict_model_uses_the_gate():
    assert decide(_verdict()) == "approve"  # mean 3.5
    assert decide(_verdict(calibration=2)) == "reject"
    assert decide(_verdict(flag="confident_hallucination")) == "reject"


@pytest.mark.parametrize("bad", [
    {"calibration": 1234567890},  # what a small local model really emitted
    {"calibration": 0}, {"technical_accuracy": 6}, {"flag": "maybe"}, {"extra_key": 1},
    {"reasoning": {"technical_accuracy": "x"}},
])
def test_invalid_verdicts_do_not_validate(bad):
    with pytest.raises(ValidationError):
        _verdict(**bad)


def test_missing_key_does_not_validate():
    data = _verdict().model_dump()
    del data["calibration"]
    with pytest.raises(ValidationError):
        EditorVerdict.model_validate(data)


@pytest.mark.parametrize("decision,used,policy,expected", [
    ("approve", 0, "human", "await_human"),
    ("approve", 0, "escalations_only", "publish"),
    ("reject", 0, "human", "revise"),
    ("reject", 2, "human", "revise"),
    ("reject", 3, "human", "escalate"),       # at most 3 revision cycles
    ("reject", 3, "escalations_only", "escalate"),
    ("invalid", 0, "human", "escalate"),      # never approve on an invalid verdict
    ("invalid", 0, "escalations_only", "escalate"),
])
def test_next_step_after_review(decision, used, policy, expected):
    assert next_step_after_review(decision, used, 3, policy) == expected


@pytest.mark.parametrize("decision,used,expected", [
    ("approve", 1, "await_human"),  # the human who asked for the revision sees its result
    ("reject", 1, "revise"),
    ("reject", 3, "escalate"),
    ("invalid", 1, "escalate"),
])
def test_after_a_human_revise_escalations_only_still_asks_that_human(decision, used, expected):
    assert next_step_after_review(decision, used, 3, "escalations_only", human_asked_for_revision=True) == expected
    assert next_step_after_review(decision, used, 3, "human", human_asked_for_revision=True) == expected


def test_raw_newlines_inside_json_strings_still_validate_but_bad_scores_do_not():
    from tools.llm import LLMOutputInvalid, _parse

    text = ('{"technical_accuracy": 3, "calibration": 3, "mechanistic_depth": 4, "audience_calibration": 3, '
            '"flag": "none", "reasoning": {"technical_accuracy": "line one\nline two", "calibration": "c", '
            '"mechanistic_depth": "d", "audience_calibration": "e"}}')
    v = _parse(EditorVerdict, text)
    assert v.reasoning.technical_accuracy == "line one\nline two" and decide(v) == "approve"
    with pytest.raises(LLMOutputInvalid):
        _parse(EditorVerdict, text.replace('"calibration": 3', '"calibration": 1234567890'))
