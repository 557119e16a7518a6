"""ReDoS: every pattern that reads untrusted text runs in linear time. Each case times the same
function on an adversarial input of size n and of size 8n in one test and asserts the ratio stays
far below what a quadratic pattern gives (64x: the old URL-credential and title patterns measured
65x and 64x with this harness). Times are the thread's CPU time (time.thread_time), best of 3 with
the collector off, so a loaded machine that preempts the test does not inflate one side: a linear
function measures ~8x. The bound is generous (24x)."""
from __future__ import annotations

import gc
import time

import pytest

from agents.writer import split_title
from tools.chunking import parse_markdown, split_sentences
from tools.redaction import _PATTERNS, Scrubber, public_reason

LINEAR_BOUND = 24.0


def _best(fn, arg, loops: int, repeat: int = 3) -> float:
    best = float("inf")
    gc.collect()
    gc.disable()  # a collection landing in one of the two timings is not the pattern's cost
    try:
        for _ in range(repeat):
            t0 = time.thread_time()
            for _ in range(loops):
                fn(arg)
            best = min(best, time.thread_time() - t0)
    finally:
        gc.enable()
    return best


def _ratio(fn, make, n: int) -> float:
    """Inputs stay small (8n is tens of KB): past the CPU caches a linear scan also slows per byte."""
    small, big = make(n), make(8 * n)
    fn(small)  # warm up (regex compile caches, imports)
    loops = 1
    while _best(fn, small, loops, 1) < 0.01 and loops < 4096:  # long enough for the CPU clock to resolve it
        loops *= 2
    return _best(fn, big, loops) / max(_best(fn, small, loops), 1e-9)


SCRUBBER = Scrubber(["a-configured-secret-value-1234"])


def every_pattern(text: str) -> None:
    """The scrubber's credential patterns, each on the whole text (no cut, no trigger test)."""
    for _, pattern, repl in _PATTERNS:
        pattern.sub(repl, text)


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
    "scrubber, URL credential": (every_pattern, lambda n: "GET /x?u=http://" + "a." * n + "@", 2000),
    "scrubber, user:password run": (every_pattern, lambda n: "x://" + "a:" * n + "@", 2000),
    "scrubber, key=value run": (every_pattern, lambda n: "password" + " " * n + "x", 4000),
    "scrubber, whole": (SCRUBBER.text, lambda n: "GET /x?u=http://" + "a." * n + "@", 2000),
    "public reason, endpoint run": (public_reason, lambda n: "at http://" + "h" * n + " failed", 4000),
    # one long ATX heading line at ingest
    "chunker, ATX heading": (parse_markdown, lambda n: "# " + " #a" * n + " \n\ntext\n", 300),
    "chunker, sentence boundaries": (split_sentences, lambda n: "A." + "\n" * n + "b", 3000),
    "chunker, abbreviation check": (split_sentences, lambda n: "x" + "a." * n + " Next one.", 2000),
    "writer, title line": (lambda t: split_title(t, "fallback"), lambda n: "#" + " " * n + "\t" * n + "x", 2000),
    "writer, blank lines": (lambda t: split_title(t, "fallback"), lambda n: "x" + "\n" * n + "y", 3000),
    "gateway, fenced reply": (_parse_json_reply, lambda n: "```" + " " * n + "x", 3000),
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
