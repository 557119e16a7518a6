"""The retriever's embedding model starts loading while the Researcher's plan call waits on the LLM
(tools.retrieval.warm_up_embedder): in a background thread, once, a failure only logged. The model
is faked here (a boundary); the demo's post time with the real one is in README Numbers."""
from __future__ import annotations

import threading

from tools import retrieval
from tools.retrieval import Retriever


class SlowModel:
    def __init__(self, fail: bool = False):
        self.loaded, self.fail, self.threads = False, fail, []
        self.done = threading.Event()

    def load(self):
        self.threads.append(threading.current_thread().name)
        try:
            if self.fail:
                raise RuntimeError("no weights here")
            self.loaded = True
        finally:
            self.done.set()


def test_warm_up_loads_in_a_background_thread_once(monkeypatch):
    model = SlowModel()
    monkeypatch.setattr(retrieval, "_default", Retriever(embedder=model))
    assert retrieval.warm_up_embedder() is True
    assert model.done.wait(10) and model.loaded
    assert model.threads == ["embedder-warm-up"]
    assert retrieval.warm_up_embedder() is False  # already loaded: nothing started
    assert model.threads == ["embedder-warm-up"]


def test_a_failed_warm_up_is_only_logged(monkeypatch, caplog):
    model = SlowModel(fail=True)
    monkeypatch.setattr(retrieval, "_default", Retriever(embedder=model))
    assert retrieval.warm_up_embedder() is True
    assert model.done.wait(10) and not model.loaded
    for _ in range(100):  # the thread logs just after load() returns
        if "warm-up failed" in caplog.text:
            break
        threading.Event().wait(0.02)
    assert "embedding model warm-up failed: no weights here" in caplog.text


def test_an_embedder_without_a_lazy_load_is_left_alone(monkeypatch):
    class Plain:  # e.g. the tests' hash embedder: nothing to load
        name = "plain"

    monkeypatch.setattr(retrieval, "_default", Retriever(embedder=Plain()))
    assert retrieval.warm_up_embedder() is False
