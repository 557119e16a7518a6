"""tests/proc_guard.py: a guarded test server dies with the test process, even one killed by SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWNER = """
import sys, time
from tests.proc_guard import guarded_popen
p = guarded_popen([sys.executable, "-c", "import os, time, subprocess, sys; "
                   "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
                   "print(os.getpid(), c.pid, flush=True); time.sleep(300)"], stdout=sys.stdout)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone for our purposes
        return fh.read().split(")")[-1].split()[0] != "Z"


def test_a_sigkilled_owner_takes_its_guarded_server_and_its_children_along():
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        server, grandchild = (int(x) for x in owner.stdout.readline().split())
        assert _alive(server) and _alive(grandchild)
        owner.send_signal(signal.SIGKILL)  # no finalizer runs
        owner.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (_alive(server) or _alive(grandchild)):
            time.sleep(0.2)
        assert not _alive(server) and not _alive(grandchild)
    finally:
        if owner.poll() is None:
            owner.kill()
