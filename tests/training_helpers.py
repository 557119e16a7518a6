"""Decided posts made through the real graph (scripted LLM over HTTP, real database): the material of
the training export. Used by tests/integration/test_training_loop.py, the vLLM tier and the adapter fixture
(tests/fixtures/adapters/README.md)."""
from __future__ import annotations

import re

from tests.engine_fixtures import JUDGE, PASSING, WRITER

# What the scripted Writer writes: a first draft a human sends back, the revision they approve. The
# approved style (a title, [n] citations, the notes' numbers) is what an adapter trained on it learns.
FIRST_DRAFT = "# {topic}\n\nThis topic matters a lot for everyone and is very important in many ways."
APPROVED = ("# {topic}\n\nAccording to the notes, {topic} changes how memory is used [1]. "
            "The notes give the figures that matter and the mechanism behind them [2]. "
            "Practitioners should size deployments with these numbers in hand [1].")
TOPICS = ("KV cache arithmetic", "Grouped-query attention", "Paged attention in vLLM", "LoRA adapters",
          "Speculative decoding")


def _topic_of(req) -> str:
    # The prompts fence the topic as a data block: <<<DATA-... topic>>> / the topic / <<<END DATA-... topic>>>
    m = re.search(r"<<<DATA-[0-9a-f]+ topic>>>\n(.+?)\n<<<END ", req.prompt)
    return m.group(1).strip() if m else "the topic"


def script_writer(llm) -> None:
    """First draft vague; any revision (a human asked for it) in the approved style."""
    def reply(req):
        topic = _topic_of(req)
        revising = re.search(r"<<<DATA-[0-9a-f]+ feedback>>>", req.prompt) is not None
        return (APPROVED if revising else FIRST_DRAFT).format(topic=topic)

    llm.on_chat(reply, model=WRITER)
    llm.on_chat(lambda req: PASSING, model=JUDGE)


async def make_decided_posts(topics=TOPICS, *, reject_last: bool = True) -> dict[str, list[str]]:
    """Per topic: a post whose first draft a human revises and whose revision they approve (SFT + one
    DPO pair); with reject_last, the last topic's draft is rejected instead (no SFT, no pair).
    Returns {"published": [thread ids], "rejected": [...]}."""
    from service.runner import resume, start_post

    out: dict[str, list[str]] = {"published": [], "rejected": []}
    for i, topic in enumerate(topics):
        snap = await start_post(topic, requester="trainer")
        assert snap.waiting_for_human, snap.values.get("error")
        if reject_last and i == len(topics) - 1:
            done = await resume(snap.thread_id, {"action": "reject", "reason": "off-topic", "reviewer": "rita"})
            assert done.values["outcome"] == "rejected"
            out["rejected"].append(snap.thread_id)
            continue
        revised = await resume(snap.thread_id, {"action": "revise", "feedback": "cite the notes, give numbers",
                                                "reviewer": "rita"})
        assert revised.waiting_for_human and revised.interrupt["draft"]["version"] == 2
        done = await resume(snap.thread_id, {"action": "approve", "reviewer": "rita"})
        assert done.values["outcome"] == "published", done.values.get("error")
        out["published"].append(snap.thread_id)
    return out
