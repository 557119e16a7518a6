"""The keyed append reducer of the post state: replays add nothing, different items always add."""
from __future__ import annotations

from agents.models import HumanDecision
from graphs.state import append_new


def test_an_item_already_in_the_history_is_not_appended_again():
    d1 = HumanDecision(decision="revise", feedback="more numbers", draft_version=1, answered_checkpoint="c1")
    history = append_new([], [d1.model_dump(mode="json")])
    # A subgraph or a replayed node hands back the whole list: nothing is duplicated.
    assert append_new(history, [d1.model_dump(mode="json")]) == history
    assert append_new(history, [d1]) == history  # a model and its dump are the same item


def test_items_without_a_key_are_told_apart_by_content():
    first = {"decision": "revise", "draft_version": 1}
    second = {"decision": "approve", "draft_version": 2}
    history = append_new(append_new([], [first]), [second])
    assert history == [first, second]  # a missing key never makes two answers look alike
    assert append_new(history, [dict(first)]) == history


def test_old_keyless_decisions_do_not_swallow_new_keyed_ones():
    old = {"decision": "revise", "reviewer": "ann", "draft_version": 1}  # as stored before keys were dumped
    new = HumanDecision(decision="approve", reviewer="ann", draft_version=2, answered_checkpoint="c2")
    history = append_new([old], [new.model_dump(mode="json")])
    assert [d["decision"] for d in history] == ["revise", "approve"]


def test_every_model_in_the_state_may_be_read_back_from_a_checkpoint():
    """Desk subgraphs keep their own checkpoints, where channel values are validated models: each
    model class the state can hold must be on the serializer's allow list, or reading it back is
    refused (and the desk's work silently lost)."""
    import typing

    from pydantic import BaseModel

    from graphs.state import PostState
    from storage.checkpointer import STATE_TYPES

    seen: set[type] = set()

    def walk(tp) -> None:
        for arg in typing.get_args(tp):
            walk(arg)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and tp not in seen:
            seen.add(tp)
            for field in tp.model_fields.values():
                walk(field.annotation)

    walk(PostState)
    missing = {(t.__module__, t.__name__) for t in seen} - set(STATE_TYPES)
    assert not missing, f"add to storage.checkpointer.STATE_TYPES: {sorted(missing)}"


def test_a_checkpoint_written_before_the_editor_models_moved_still_loads():
    """EditorVerdict and friends moved from agents.editor to agents.models: a checkpoint written
    before names the old module, and must load (into the same class) with the allowlist it has now."""
    from agents.models import DimensionReasoning, EditorVerdict
    from storage.checkpointer import make_serde

    serde = make_serde()
    verdict = EditorVerdict(technical_accuracy=4, calibration=3, mechanistic_depth=3, audience_calibration=4,
                            flag="none", reasoning=DimensionReasoning(technical_accuracy="a", calibration="b",
                                                                      mechanistic_depth="c", audience_calibration="d"))
    kind, data = serde.dumps_typed(verdict)
    assert b"agents.models" in data
    old = data.replace(b"agents.models", b"agents.editor")  # same length: still valid msgpack
    assert serde.loads_typed((kind, old)) == verdict
    assert serde.loads_typed((kind, data)) == verdict
