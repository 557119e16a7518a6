"""Where a process's CPU goes: py-spy on a running server, folded into a per-package breakdown.

Used by evals/bench/concurrency.py (`--profile`) on `newsroom serve` while a batch runs:

    with PySpy(server_pid, out_path) as spy:
        ... the load ...
    print(format_breakdown(breakdown(out_path)))

py-spy samples the Python stacks of the process and its children without changing them
(`--nonblocking`: the target is never paused). Each sample is charged to one owner, the innermost
frame that is not the standard library (a json.dumps called by the saver is the saver's, an
asyncio callback is whoever's coroutine it ran), so the shares add up to 100%; the inclusive share
of the project's own layers and of a few libraries is printed too.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

NOT_A_BENCHMARK = True
ROOT = re.escape(str(Path(__file__).resolve().parents[2]))  # the project's own files start with it

# (name, pattern on a frame's file path), first match wins; checked against the innermost
# non-stdlib frame of each sample.
OWNERS: tuple[tuple[str, str], ...] = (
    ("checkpoint saver (langgraph-checkpoint-postgres + serde)", r"langgraph/checkpoint/"),
    ("psycopg + pool", r"/psycopg(_pool|_binary|_c)?/"),
    ("LLM client (openai SDK)", r"/openai/"),
    ("HTTP client (httpx/httpcore/anyio)", r"/(httpx|httpcore|anyio|h11)/"),
    ("langgraph pregel (step loop, channels)", r"/langgraph/(pregel|graph|channels|_internal|types|utils)"),
    ("Agent Server runtime (langgraph_api, runtime_inmem)", r"/langgraph_(api|runtime|runtime_inmem|storage)/"),
    ("langchain_core (runnables, callbacks)", r"/langchain_core/"),
    ("ASGI server (uvicorn, starlette, sse)", r"/(uvicorn|starlette|sse_starlette|websockets)/"),
    ("pydantic", r"/pydantic(_core)?/"),
    ("serialisation (orjson, ormsgpack, msgpack)", r"/(orjson|ormsgpack|msgpack)"),
    ("tracing / logging (structlog, opentelemetry, langsmith)", r"/(structlog|opentelemetry|langsmith|langfuse)/"),
    ("newsroom storage/", rf"^{ROOT}/storage/"),
    ("newsroom tools/", rf"^{ROOT}/tools/"),
    ("newsroom agents/ + graphs/", rf"^{ROOT}/(agents|graphs)/"),
    ("newsroom service/ + config/", rf"^{ROOT}/(service|config)/"),
)
# Inclusive shares: a sample counts once for each of these that appears anywhere on its stack.
INCLUSIVE: tuple[tuple[str, str], ...] = (
    ("storage/ (our SQL, incl. psycopg below it)", rf"(^| ){ROOT}/storage/"),
    ("tools/llm.py (gateway, incl. SDK below it)", rf"(^| ){ROOT}/tools/llm\.py"),
    ("checkpoint saver", r"langgraph/checkpoint/"),
    ("psycopg", r"/psycopg(_pool)?/"),
    ("openai SDK", r"/openai/"),
    ("service/auth.py", rf"(^| ){ROOT}/service/auth\.py"),
)
_STDLIB = re.compile(r"/lib/python3\.\d+/(?!site-packages/)|^<frozen |^<string>|^\(?native\)?")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")


class PySpy:
    """`py-spy record` on pid (and its children) into a raw collapsed-stack file while in the block."""

    def __init__(self, pid: int, out: Path, *, rate: int = 97):
        self.pid, self.out, self.rate = pid, Path(out), rate
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def executable() -> str | None:
        here = Path(sys.executable).with_name("py-spy")
        return str(here) if here.exists() else shutil.which("py-spy")

    def __enter__(self) -> PySpy:
        exe = self.executable()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy; it is in the dev extra)")
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(self.pid), "--subprocesses", "--nonblocking", "--format", "raw",
             "--full-filenames", "--nolineno", "--rate", str(self.rate), "--output", str(self.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(1.0)  # attach before the load starts
        if self.proc.poll() is not None:
            raise RuntimeError(f"py-spy could not attach: {self.proc.stderr.read().decode(errors='replace')[-500:]}")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for part in stack.split(";"):
        m = _FRAME.match(part)
        out.append((m["func"], m["file"]) if m else (part, ""))
    return out


def breakdown(raw_file: Path) -> dict:
    """{"samples", "owners": {name: share}, "inclusive": {name: share}, "top_functions": [...]} from
    py-spy's raw output (one `frame;frame;...;frame count` line per distinct stack, leaf last)."""
    owners, inclusive, leaf_funcs = Counter(), Counter(), Counter()
    total = 0
    for line in Path(raw_file).read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        if frames and frames[0][0].startswith("process ") or frames and frames[0][0].startswith("thread "):
            frames = [f for f in frames if f[1]]  # py-spy's process/thread pseudo frames
        total += n
        owner = next(((func, file) for func, file in reversed(frames) if file and not _STDLIB.search(file)), None)
        name = "other (stdlib only: event loop, threads)"
        if owner is not None:
            name = next((label for label, pat in OWNERS if re.search(pat, owner[1])), "other libraries")
            leaf_funcs[f"{owner[0]} ({_short(owner[1])})"] += n
        owners[name] += n
        files = " ".join(file for _, file in frames)
        for label, pat in INCLUSIVE:
            if re.search(pat, files):
                inclusive[label] += n
    share = (lambda c: {k: round(v / total, 4) for k, v in c.most_common()}) if total else (lambda c: {})
    return {"samples": total, "owners": share(owners), "inclusive": share(inclusive),
            "top_functions": [(k, round(v / total, 4)) for k, v in leaf_funcs.most_common(15)] if total else []}


def _short(path: str) -> str:
    for marker in ("site-packages/", "/wt/", "/newsroom/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def format_breakdown(b: dict) -> str:
    lines = [f"  server CPU by owner ({b['samples']} py-spy samples; innermost non-stdlib frame):"]
    lines += [f"    {share * 100:5.1f}%  {name}" for name, share in b["owners"].items()]
    lines.append("  inclusive (anywhere on the stack):")
    lines += [f"    {share * 100:5.1f}%  {name}" for name, share in b["inclusive"].items()]
    lines.append("  top functions (self):")
    lines += [f"    {share * 100:5.1f}%  {name}" for name, share in b["top_functions"][:10]]
    return "\n".join(lines)
