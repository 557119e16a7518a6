"""A real `newsroom serve` (langgraph dev Agent Server) on the test session's embedded PostgreSQL."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

# The identities of every test server (README, Security). Fixed values: the tests are their only users.
SERVICE_TOKEN = "svc-test-token-0a7f3c91d2e84b5f9c60"
APPROVER, APPROVER_TOKEN = "dana", "apr-test-token-dana-5b1e8c2f7a9d4e60"
STUDIO_APPROVER, STUDIO_APPROVER_TOKEN = "studio-user", "apr-test-token-studio-3c9d1f6e2b8a7054"
VIEWER, VIEWER_TOKEN = "vic", "vwr-test-token-vic-8e2a6c4f1d9b3075"


def auth_env() -> dict[str, str]:
    return {"NEWSROOM_SERVICE_TOKEN": SERVICE_TOKEN,
            "NEWSROOM_APPROVER_TOKENS": f"{APPROVER}:{APPROVER_TOKEN},{STUDIO_APPROVER}:{STUDIO_APPROVER_TOKEN}",
            "NEWSROOM_VIEWER_TOKENS": f"{VIEWER}:{VIEWER_TOKEN}"}


def service_client(url: str):
    """The Agent Server as the service identity (what the polling bot and the sweep use)."""
    from langgraph_sdk import get_client

    return get_client(url=url, api_key=SERVICE_TOKEN)


def approver_client(url: str, token: str = APPROVER_TOKEN):
    """The Agent Server as an approver (Studio or the SDK with an approver's token)."""
    from langgraph_sdk import get_client

    return get_client(url=url, api_key=token)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgentServer:
    def __init__(self, port: int, env: dict, log_path: Path):
        # Every test server has the test identities, unless a test configures its own.
        env = {**auth_env(), **env} if "NEWSROOM_SERVICE_TOKEN" not in env else env
        self.port, self.env, self.log_path = port, env, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> AgentServer:
        """Returns once /ok answers AND the server's own start-up recovery pass has reported: that
        pass examines every thread of the database, and a test creating a cut-off thread while it
        plans would race with it (it may resume the test's thread first, as it should in production)."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"newsroom serve exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=1).status_code == 200 and self._recovery_reported():
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"newsroom serve did not answer /ok in {timeout_s}s:\n{self.log_path.read_text()[-3000:]}")

    def _recovery_reported(self) -> bool:
        # service.cli.maintenance.start_recovery_after_serve echoes one line when its pass ends:
        # "recovery: examined ...", "recovery failed: ..." or "recovery skipped: ...".
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            text = f.read().decode(errors="replace")
        return any(line.startswith(("recovery: examined", "recovery failed", "recovery skipped"))
                   for line in text.splitlines())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]


@pytest.fixture(scope="session")
def agent_server(pg_url, scripted_llm, session_dir):
    """Started once per session; it uses the scripted LLM (writer/judge) and our database."""
    env = dict(os.environ, DATABASE_URL=pg_url, NEWSROOM_LLM_BASE_URL=scripted_llm.base_url,
               NEWSROOM_LLM_PROVIDER="llamacpp", NEWSROOM_LLM_MAX_ATTEMPTS="1", NEWSROOM_LOG_LEVEL="INFO")
    server = AgentServer(free_port(), env, session_dir / "agent-server.log").start()
    yield server
    server.stop()
