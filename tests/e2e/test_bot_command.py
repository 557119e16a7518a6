"""`newsroom bot` as a user starts it (a real process, the real PTB client, our fake Bot API):
a refused token and an unreachable Bot API are one clear error each; a good start polls and
stops cleanly on SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fake_telegram import TOKEN
from tests.server_fixtures import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path, base_url: str, token: str = TOKEN, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(TELEGRAM_BOT_TOKEN=token, NEWSROOM_TELEGRAM_API_BASE_URL=base_url, NEWSROOM_SERVICE_TOKEN="s" * 40,
               NEWSROOM_DATA_DIR=str(tmp_path / "state"), NEWSROOM_TELEGRAM_ALLOWED_CHATS="-100", **extra)
    return env


def _bot(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", "bot", "--no-sweep", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_refused_token_is_one_clear_error(fake_telegram, tmp_path):  # noqa: F811
    wrong = TOKEN.split(":")[0] + ":not-the-token-canary-77"
    out = _bot(_env(tmp_path, fake_telegram.url, token=wrong))
    assert out.returncode == 1, out.stderr
    assert f"the Telegram Bot API at {fake_telegram.url} refused the bot token: check TELEGRAM_BOT_TOKEN" in out.stderr
    assert "Traceback" not in out.stderr and "not-the-token-canary-77" not in out.stderr + out.stdout


def test_an_unreachable_bot_api_is_retried_with_warnings_then_one_clear_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    out = _bot(_env(tmp_path, url, NEWSROOM_TELEGRAM_CONNECT_WAIT_S="2"))
    assert out.returncode == 1, out.stderr
    assert f"Telegram Bot API at {url} not reachable" in out.stderr  # the warning while it retries
    assert f"Error: cannot reach the Telegram Bot API at {url}:" in out.stderr and "Traceback" not in out.stderr


def test_a_good_start_polls_and_stops_cleanly(fake_telegram, tmp_path):  # noqa: F811
    polls_before = len(fake_telegram.calls_of("getUpdates"))
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "bot", "--no-sweep"], cwd=ROOT,
                            env=_env(tmp_path, fake_telegram.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while len(fake_telegram.calls_of("getUpdates")) <= polls_before and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        assert len(fake_telegram.calls_of("getUpdates")) > polls_before, "the bot never polled"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert "polling Telegram" in out and "@" in out, out + err
    assert proc.returncode == 0, err[-2000:]  # PTB stops on SIGTERM and the command ends normally
