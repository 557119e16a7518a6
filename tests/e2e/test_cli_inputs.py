"""The CLI facing bad input and unhealthy surroundings (a bad value, an unknown thread, a database
that is down or wrong): one clear message, the right exit code, nothing changed."""
from __future__ import annotations

from click.testing import CliRunner

from service.cli.posts import list_cmd, post


def test_list_refuses_an_unknown_status_and_names_the_valid_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSROOM_DATA_DIR", str(tmp_path / "state"))  # nothing may start a database here
    result = CliRunner().invoke(list_cmd, ["--status", "waiting"])  # the command alone: no logging or signal set-up in pytest
    assert result.exit_code == 2, result.output
    assert "'waiting' is not a status" in result.output
    assert "awaiting_approval" in result.output and "escalated" in result.output
    assert not (tmp_path / "state").exists()


def test_post_refuses_an_empty_or_overlong_topic_before_anything_starts(tmp_path, monkeypatch):
    """It was a pydantic traceback from inside the graph, after the database and LLM had started."""
    monkeypatch.setenv("NEWSROOM_DATA_DIR", str(tmp_path / "state"))
    empty = CliRunner().invoke(post, ["   "])
    assert empty.exit_code == 2 and "the topic is empty" in empty.output, empty.output
    long = CliRunner().invoke(post, ["x" * 501])
    assert long.exit_code == 2 and "the topic has 501 characters; the limit is 500" in long.output, long.output
    assert not (tmp_path / "state").exists()  # no database was started for them


def test_db_url_leaves_the_embedded_server_running_until_db_stop(tmp_path):
    """`newsroom db url` printed the address of a server that stopped as the command exited."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import psycopg

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["NEWSROOM_DATA_DIR"] = str(tmp_path / "state")
    cli = [sys.executable, "-m", "service.cli", "db"]
    out = subprocess.run([*cli, "url"], cwd=root, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip().splitlines()[-1]
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:  # still up after the command exited
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        stop = subprocess.run([*cli, "stop"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert "stopped" in stop.stdout
    try:
        psycopg.connect(url, connect_timeout=3).close()
        raise AssertionError("the embedded server is still up after `newsroom db stop`")
    except psycopg.OperationalError:
        pass


async def test_a_thread_is_found_by_the_end_telegram_shows_or_refused_clearly(db, pg_url):
    """`newsroom status|approve|revise|reject` take the last (or first) 6+ characters of a thread id,
    as Telegram's messages show them; an ambiguous or unknown part is refused with what to do."""
    import os
    import subprocess
    import sys
    import uuid
    from pathlib import Path

    from storage import posts

    root = Path(__file__).resolve().parents[2]
    shared = uuid.uuid4().hex[:10]  # two ids that start alike, as time-ordered server ids do
    first, second = (f"{shared}{uuid.uuid4().hex[10:]}" for _ in range(2))
    for tid in (first, second):
        await posts.create_post(db, tid, f"Found by its end {tid[-8:]}", "cli-test", source="cli")
    env = dict(os.environ, DATABASE_URL=pg_url)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=120)

    found = cli("status", second[-8:])
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith(second) and f"Found by its end {second[-8:]}" in found.stdout

    ambiguous = cli("status", shared)
    assert ambiguous.returncode == 1 and "matches more than one post" in ambiguous.stderr
    assert first in ambiguous.stderr and second in ambiguous.stderr

    unknown = cli("approve", "0badc0de")
    assert unknown.returncode == 1 and "no post with thread id '0badc0de'" in unknown.stderr
    assert (await posts.get_post(db, first))["status"] == "queued"  # nothing was resumed


def test_an_unreachable_database_is_one_clear_error_not_a_traceback(tmp_path):
    """A closed port used to wait pool_timeout_s (30 s) behind psycopg's retry warnings and end in
    a PoolTimeout traceback; now: a bounded wait, the reason, what to check, no password."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.server_fixtures import free_port

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, DATABASE_URL=f"postgresql://ann:canary-pw-5150@127.0.0.1:{free_port()}/news",
               NEWSROOM_DB_CONNECT_WAIT_S="1", NEWSROOM_DATA_DIR=str(tmp_path / "state"))
    out = subprocess.run([sys.executable, "-m", "service.cli", "list"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "Error: cannot connect to the database ann@127.0.0.1:" in out.stderr and "Connection refused" in out.stderr
    assert "Unset DATABASE_URL to use the embedded PostgreSQL" in out.stderr
    assert "Traceback" not in out.stderr and "canary-pw-5150" not in out.stderr + out.stdout


def test_a_wrong_database_name_fails_at_once_with_what_to_check(pg_url, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    from urllib.parse import urlsplit, urlunsplit

    root = Path(__file__).resolve().parents[2]
    wrong = urlunsplit(urlsplit(pg_url)._replace(path="/no_such_newsroom_db"))
    env = dict(os.environ, DATABASE_URL=wrong, NEWSROOM_DB_CONNECT_WAIT_S="60", NEWSROOM_DATA_DIR=str(tmp_path / "s"))
    out = subprocess.run([sys.executable, "-m", "service.cli", "list"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=50)  # well inside the 60 s a wait would take
    assert out.returncode == 1, out.stderr
    assert 'database "no_such_newsroom_db" does not exist' in out.stderr
    assert "check the user, password and database name" in out.stderr
    assert "not reachable yet" not in out.stderr and "Traceback" not in out.stderr


def test_health_reports_every_part_even_with_the_database_down(pg_url, scripted_llm, tmp_path):
    """`newsroom health` exits 0 only when all is well; a database that is down is one line of the
    report (the LLM endpoints are still checked), not a traceback that hides the rest."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.server_fixtures import free_port

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, DATABASE_URL=pg_url, NEWSROOM_LLM_PROVIDER="llamacpp",
               NEWSROOM_LLM_BASE_URL=scripted_llm.base_url, NEWSROOM_DATA_DIR=str(tmp_path / "state"))

    def health(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "service.cli", "health", *args], cwd=root,
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)

    well = health()
    assert well.returncode == 0, well.stdout + well.stderr
    assert well.stdout.startswith("database: postgres (PostgreSQL") and f"{scripted_llm.base_url}: reachable" in well.stdout

    down = {"DATABASE_URL": f"postgresql://ann@127.0.0.1:{free_port()}/news", "NEWSROOM_DB_CONNECT_WAIT_S": "0"}
    text = health(**down)
    assert text.returncode == 1, text.stdout + text.stderr
    assert text.stdout.startswith("database: UNREACHABLE (cannot connect to the database ann@127.0.0.1:")
    assert f"{scripted_llm.base_url}: reachable" in text.stdout and "Traceback" not in text.stderr
    as_json = health("--json", **down)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["database"]["ok"] is False and all(i["reachable"] for i in report["llm"].values())


def test_serve_on_a_busy_port_says_so_before_starting_anything(tmp_path):
    """`langgraph dev` on a taken port sat there, neither serving nor saying why."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["NEWSROOM_DATA_DIR"] = str(tmp_path / "state")
        env["NEWSROOM_SERVICE_TOKEN"] = "s" * 40  # serve refuses to start without one (tests/e2e/security)
        out = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], cwd=root, env=env,
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"cannot serve on 127.0.0.1:{port}: Address already in use" in out.stderr
    assert not (tmp_path / "state" / "pg").exists()  # no embedded database was started for it

