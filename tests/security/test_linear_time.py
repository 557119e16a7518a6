"""ReDoS: every pattern that reads untrusted text runs in linear time. Each case times the same
function on an adversarial input of size n and of size 8n in one test, best of 3, and asserts the
ratio stays far below what a quadratic pattern gives (64x; the cubic heading pattern gave ~500x).
A generous bound (24x) so that a loaded machine does not flake it: a linear function's ratio is ~8."""
from __future__ import annotations

import time

import pytest

from agents.writer import split_title
from tools.chunking import parse_markdown, split_sentences
from tools.tracing import Scrubber, public_reason

LINEAR_BOUND = 24.0


def _best(fn, arg, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best


def _ratio(fn, make, n: int) -> float:
    small, big = make(n), make(8 * n)
    _best(fn, small, 1)  # warm up (regex compile caches, imports)
    return _best(fn, big) / max(_best(fn, small), 1e-6)


SCRUBBER = Scrubber(["a-configured-secret-value-1234"])


def _parse_json_reply(text: str):
    from pydantic import BaseModel

    from tools.llm import LLMOutputInvalid, _parse

    class Tiny(BaseModel):
        a: int

    try:
        _parse(Tiny, text)
    except LLMOutputInvalid:
        pass


CASES = {
    # the access log scrubs query strings: a URL, then a long run that is no credential
    "scrubber, URL credential": (SCRUBBER.text, lambda n: "GET /x?u=http://" + "a." * n + "@", 4000),
    "scrubber, user:password run": (SCRUBBER.text, lambda n: "x://" + "a:" * n + "@", 4000),
    "scrubber, key=value run": (SCRUBBER.text, lambda n: "password" + " " * n + "x", 8000),
    "public reason, endpoint run": (public_reason, lambda n: "at http://" + "h" * n + " failed", 8000),
    # one long ATX heading line at ingest
    "chunker, ATX heading": (parse_markdown, lambda n: "# " + " #a" * n + " \n\ntext\n", 300),
    "chunker, sentence boundaries": (split_sentences, lambda n: "A." + "\n" * n + "b", 4000),
    "chunker, abbreviation check": (split_sentences, lambda n: "x" + "a." * n + " Next one.", 3000),
    "writer, title line": (lambda t: split_title(t, "fallback"), lambda n: "#" + " " * n + "\t" * n + "x", 3000),
    "writer, blank lines": (lambda t: split_title(t, "fallback"), lambda n: "x" + "\n" * n + "y", 4000),
    "gateway, fenced reply": (_parse_json_reply, lambda n: "```" + " " * n + "x", 4000),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_untrusted_text_patterns_are_linear(case):
    fn, make, n = CASES[case]
    ratio = _ratio(fn, make, n)
    assert ratio < LINEAR_BOUND, f"{case}: 8x the input took {ratio:.1f}x the time (linear ~8, quadratic ~64)"


def test_scrubbing_cuts_very_long_text_and_still_removes_secrets():
    secret = "a-configured-secret-value-1234"
    text = "q=" + "x" * 200_000 + secret + "y" * 200_000
    out = SCRUBBER.text(text)
    assert len(out) < 70_000 and secret not in out and "chars cut" in out
    assert secret not in SCRUBBER.text("head " + secret + " tail")
