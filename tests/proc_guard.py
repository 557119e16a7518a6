"""Test servers that cannot outlive a killed test run.

A fixture stops its server from a finalizer (process group, SIGTERM then SIGKILL). A test run killed
with SIGKILL runs no finalizer, so a server started through `guarded_popen` runs under a small guard
process in its own process group: when the test process is gone, the guard kills the whole group
(the server and every process it spawned, e.g. vLLM's engine core).

    proc = guarded_popen([python, "-m", "vllm.entrypoints.openai.api_server", ...], stdout=log, env=env)
    ...
    stop_group(proc)
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time


def guarded_popen(cmd: list[str], **kwargs) -> subprocess.Popen:
    guard = [sys.executable, "-m", "tests.proc_guard", str(os.getpid()), "--", *cmd]
    return subprocess.Popen(guard, start_new_session=True, **kwargs)


def stop_group(proc: subprocess.Popen | None, timeout_s: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _main(argv: list[str]) -> int:
    owner = int(argv[0])
    cmd = argv[argv.index("--") + 1:]
    child = subprocess.Popen(cmd)  # same process group as this guard
    stopping = False

    def _term(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _term)
    while child.poll() is None:
        if stopping or not _alive(owner) or os.getppid() == 1:
            # The owner is gone (or asked us to stop): the whole group goes.
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                pass
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(0, signal.SIGKILL if child.poll() is None else signal.SIGTERM)
            break
        time.sleep(1.0)
    return child.wait() if child.poll() is None else child.returncode


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
