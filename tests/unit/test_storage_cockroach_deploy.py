"""deploy/cockroach/ scripts, exercised against a recording stand-in for the `cockroach` CLI.

CockroachDB cannot run here (no binary reachable), so this checks only the scripts' own logic —
the commands they issue (3 nodes joined, init once, the vector-index cluster setting, the
database), the version gate, re-runs, the printed DATABASE_URL and the stop script. It does not
claim CockroachDB ran.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "cockroach"

STUB = r"""#!/usr/bin/env bash
# Records every call; mimics the CLI's observable behaviour the scripts rely on.
printf '%q ' "$@" >> "$STUB_LOG"; echo >> "$STUB_LOG"
case "$1" in
  version) echo "$STUB_VERSION" ;;
  start)
    for a in "$@"; do case "$a" in --pid-file=*) pidfile="${a#--pid-file=}" ;; esac; done
    sleep 300 >/dev/null 2>&1 &
    echo $! > "$pidfile"
    ;;
  init)
    if [[ -f "$STUB_LOG.init" ]]; then echo "ERROR: cluster has already been initialized"; exit 1; fi
    touch "$STUB_LOG.init"; echo "Cluster successfully initialized" ;;
  sql) exit 0 ;;
esac
"""


@pytest.fixture()
def stub(tmp_path):
    path = tmp_path / "cockroach"
    path.write_text(STUB)
    path.chmod(0o755)
    log = tmp_path / "calls.log"
    env = dict(os.environ, COCKROACH=str(path), COCKROACH_DIR=str(tmp_path / "crdb"), STUB_LOG=str(log),
               STUB_VERSION="v25.3.2")
    yield env, log, tmp_path
    subprocess.run(["bash", str(DEPLOY / "stop-cluster.sh")], env=env, capture_output=True, timeout=30)


def _run(script: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DEPLOY / script)], env=env, capture_output=True, text=True, timeout=60)


def test_scripts_parse():
    for name in ("start-cluster.sh", "stop-cluster.sh"):
        subprocess.run(["bash", "-n", str(DEPLOY / name)], check=True)
    readme = (DEPLOY / "README.md").read_text()
    assert "was not run in CI here" in readme
    assert "feature.vector_index.enabled = true" in readme
    assert "postgresql://root@localhost:26257/newsroom?sslmode=disable" in readme


def test_start_three_nodes_init_settings_and_url(stub):
    env, log, tmp = stub
    res = _run("start-cluster.sh", env)
    assert res.returncode == 0, res.stderr
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    starts = [c for c in calls if c[0] == "start"]
    assert len(starts) == 3
    flags = [dict(a.split("=", 1) for a in c[1:] if "=" in a) for c in starts]
    assert {f["--listen-addr"] for f in flags} == {"localhost:26257", "localhost:26258", "localhost:26259"}
    assert len({f["--http-addr"] for f in flags}) == 3 and len({f["--store"] for f in flags}) == 3
    assert {f["--join"] for f in flags} == {"localhost:26257,localhost:26258,localhost:26259"}
    assert all("--insecure" in c and "--background" in c for c in starts)
    inits = [c for c in calls if c[0] == "init"]
    assert inits == [["init", "--insecure", "--host=localhost:26257"]]
    executed = [a.split("=", 1)[1] for c in calls if c[0] == "sql" for a in c if a.startswith("--execute=")]
    assert "SET CLUSTER SETTING feature.vector_index.enabled = true" in executed
    assert "CREATE DATABASE IF NOT EXISTS newsroom" in executed
    # The cluster setting is set after init (and before anything could migrate).
    order = [c[0] for c in calls]
    assert order.index("init") > max(i for i, c in enumerate(order) if c == "start")
    url = re.search(r"DATABASE_URL='([^']+)'", res.stdout).group(1)
    assert url == "postgresql://root@localhost:26257/newsroom?sslmode=disable"
    assert load_settings(database_url=url).database_url == url  # our settings accept it

    # A re-run keeps running nodes, tolerates "already initialized" and still succeeds.
    again = _run("start-cluster.sh", env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already running") == 3
    assert sum(1 for line in log.read_text().splitlines() if line.startswith("start ")) == 3

    stop = _run("stop-cluster.sh", env)
    assert stop.returncode == 0 and stop.stdout.count("stopped") == 3
    assert not list((tmp / "crdb").glob("*.pid"))


def test_refuses_old_cockroach_and_missing_binary(stub):
    env, log, _ = stub
    res = _run("start-cluster.sh", dict(env, STUB_VERSION="v25.2.4"))
    assert res.returncode == 1 and "too old" in res.stderr and "v25.3" in res.stderr
    assert "start" not in log.read_text()
    res = _run("start-cluster.sh", dict(env, COCKROACH="/nonexistent/cockroach"))
    assert res.returncode == 1 and "not found" in res.stderr
