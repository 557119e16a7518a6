"""No secret (API keys, bot token, database password) reaches a log line, message or traceback."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = r"""
import logging, sys
from tools.redaction import install_log_redaction
install_log_redaction()
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
log = logging.getLogger("newsroom.test")
log.error("calling https://api.example/v1 with key=%s", "sk-live-0123456789abcdef")
log.warning("telegram token 123456789:AAH-bot-token-secret-value in a URL")
try:
    raise ConnectionError("could not connect to postgresql://app:pg-pass-s3cret-word@db:5432/newsroom")
except ConnectionError:
    log.exception("database down")
log.info("an ordinary line stays readable")
"""


def test_secrets_never_reach_the_logs():
    env = dict(os.environ, NEWSROOM_LLM_API_KEY="sk-live-0123456789abcdef",
               NEWSROOM_TELEGRAM_BOT_TOKEN="123456789:AAH-bot-token-secret-value",
               DATABASE_URL="postgresql://app:pg-pass-s3cret-word@db:5432/newsroom")
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for secret in ("sk-live-0123456789abcdef", "AAH-bot-token-secret-value", "pg-pass-s3cret-word"):
        assert secret not in out.stderr
    assert "an ordinary line stays readable" in out.stderr
    assert "database down" in out.stderr and "Traceback" in out.stderr
    assert out.stderr.count("REDACTED") >= 3


def test_structlog_event_dicts_stay_dicts_and_are_scrubbed():
    """The Agent Server logs through structlog, whose records carry a dict as msg."""
    script = r"""
import logging, sys
import structlog
from tools.redaction import install_log_redaction
install_log_redaction()
handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(structlog.stdlib.ProcessorFormatter(processor=structlog.dev.ConsoleRenderer(colors=False)))
root = logging.getLogger(); root.addHandler(handler); root.setLevel(logging.INFO)
structlog.configure(processors=[structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
                    logger_factory=structlog.stdlib.LoggerFactory())
structlog.get_logger("srv").info("calling the model", api_key_used="sk-live-0123456789abcdef")
"""
    env = dict(os.environ, NEWSROOM_LLM_API_KEY="sk-live-0123456789abcdef")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Logging error" not in out.stderr and "calling the model" in out.stderr
    assert "sk-live-0123456789abcdef" not in out.stderr and "REDACTED" in out.stderr
