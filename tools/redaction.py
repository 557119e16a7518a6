"""Secrets out of everything that leaves the process: log records, span attributes, failure reasons
shown to a chat or a web page.

Configured secrets are removed by value (also URL-quoted or unquoted, and their heads and tails when a
repr cut them short); credential-shaped strings by pattern; mapping keys named like credentials
lose their values. tools/tracing.py applies the Scrubber to spans, install_log_redaction() to every
log record of the process.
"""
from __future__ import annotations

import json
import logging
import os
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from config import Settings, get_settings

REDACTED = "[REDACTED]"


# --- scrubbing -------------------------------------------------------------------------------

# Credential shapes, for secrets we were not told about (a key pasted into a topic, a DSN in an error).
# Each has a cheap substring trigger: the regexes only run on text that could match (prompts and
# drafts are kilobytes of prose; scanning each with every regex cost ~5 ms per generation).
_KEY_NAMES = re.compile(r"passw|pwd|api[_-]?key|secret[_-]key|client[_-]secret|access[_-]token|auth[_-]token"
                        r"|bot[_-]token")
_PATTERNS: list[tuple[Callable[[str, str], bool], re.Pattern[str], str]] = [
    (lambda s, low: "://" in s and "@" in s,  # scheme://user:PASSWORD@
     # bounded repetitions: linear time on any input (a 64 KB query string took 6.9 s unbounded)
     re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]{0,31}://[^/\s:@]{0,256}:)[^@\s/]{1,256}@"), rf"\1{REDACTED}@"),
    (lambda s, low: ":" in s,  # Telegram bot token
     re.compile(r"(?<![0-9])[0-9]{5,12}:[A-Za-z0-9_-]{30,}"), REDACTED),
    (lambda s, low: "sk-" in s or "rk-" in s,  # Anthropic / OpenAI / Langfuse secret keys
     re.compile(r"\b(?:sk|rk)-(?:ant-|lf-|proj-|or-)?[A-Za-z0-9_\-]{16,}"), REDACTED),
    (lambda s, low: "AKIA" in s, re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),  # AWS access key id
    (lambda s, low: "gh" in s and "_" in s, re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), REDACTED),  # GitHub
    (lambda s, low: "bearer" in low or "basic" in low,  # Authorization header values
     re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), rf"\1 {REDACTED}"),
    # key=value / "key": "value" for credential-named keys (not bare "token": posts talk about tokens)
    (lambda s, low: _KEY_NAMES.search(low) is not None,
     re.compile(r"(?i)\b(password|passwd|pwd|api[_-]?key|apikey|secret[_-]?key|client[_-]?secret|access[_-]?token"
                r"|auth[_-]?token|bot[_-]?token)([\"']?[ \t]{0,8}[=:][ \t]{0,8})([\"']?)[^\s\"'&,;}]{4,}"),
     rf"\1\2\3{REDACTED}"),
]
# Mapping keys whose values are dropped whole.
_SECRET_KEY = re.compile(r"(?i)^(?:.*[_\-.])?(?:api[_-]?key|apikey|secret|secret[_-]?key|private[_-]?key|password|passwd"
                         r"|token|authorization|cookie|credentials?)$")
# Environment variables whose values are secrets wherever they turn up.
_SECRET_ENV = re.compile(r"(?i)(key|token|secret|password|passwd|credential)")


class Scrubber:
    """Removes secrets from anything bound for a span."""

    def __init__(self, secrets: Iterable[str]):
        # Each secret as given and as it appears URL-quoted or unquoted (a DSN's password is quoted
        # in the URL and plain in a driver's message; a query string logs a token quoted).
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms |= {secret, quote(secret, safe=""), quote_plus(secret), unquote(secret)}
        # Longest first, so a secret containing a shorter one is removed whole. Very short values
        # ("1", "true") would shred ordinary text; real secrets are long.
        self._secrets = sorted({s for s in forms if len(s) >= 8}, key=len, reverse=True)
        # A secret cut short (pydantic quotes a long input as head...tail, a line may be clipped)
        # leaves a prefix or a suffix: runs of at least this many of its characters go too.
        self._pieces = [(secret, min(max(8, (len(secret) + 1) // 2), FRAGMENT_MIN)) for secret in self._secrets]

    def text(self, s: str) -> str:
        if len(s) > MAX_SCRUB_CHARS:  # a log line is not an archive: cut before scanning
            half = MAX_SCRUB_CHARS // 2
            s = f"{s[:half]}…[{len(s) - 2 * half} chars cut]…{s[-half:]}"
        for secret in self._secrets:
            if secret in s:
                s = s.replace(secret, REDACTED)
        for secret, m in self._pieces:
            if len(secret) > m and (secret[:m] in s or secret[-m:] in s):
                s = _drop_pieces(s, secret, m)
        low = s.lower()
        for could_match, pattern, repl in _PATTERNS:
            if could_match(s, low):
                s = pattern.sub(repl, s)
        return s

    def value(self, v: Any) -> Any:
        """A JSON-able copy of v with every string scrubbed and credential-named keys redacted."""
        if isinstance(v, str):
            return self.text(v)
        if v is None or isinstance(v, (bool, int, float)):
            return v
        if isinstance(v, Mapping):
            return {str(k): (REDACTED if _SECRET_KEY.match(str(k)) and x not in (None, "") else self.value(x))
                    for k, x in v.items()}
        if isinstance(v, (list, tuple, set, frozenset)):
            return [self.value(x) for x in v]
        if hasattr(v, "get_secret_value"):  # pydantic SecretStr
            return REDACTED
        if hasattr(v, "model_dump"):
            return self.value(v.model_dump(mode="json"))
        return self.text(str(v))


FRAGMENT_MIN = 12  # characters of a secret's head or tail that are redacted on their own
MAX_SCRUB_CHARS = 65536  # longer text keeps its head and tail (a cut secret's halves are still caught)

# An endpoint in a reason shown to a chat or a web page: scheme://host[:port][/path]. Bounded
# repetitions: linear on any input (tests/unit/security/test_linear_time.py).
_ENDPOINT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]{0,15}://[^\s\"'<>]{1,512}")
PUBLIC_REASON_MAX = 2000


def public_reason(text: str | None, settings: Settings | None = None) -> str:
    """A failure reason fit for a chat or the web page: cut to size, secrets scrubbed, endpoint
    URLs (internal LLM base URLs) replaced by <endpoint>."""
    if not text:
        return ""
    text = str(text)[:PUBLIC_REASON_MAX]
    text = Scrubber(configured_secrets(settings or get_settings())).text(text)
    return _ENDPOINT.sub("<endpoint>", text)


def _drop_pieces(s: str, secret: str, m: int) -> str:
    """Redact every run of >= m characters in s that is a prefix or a suffix of secret."""
    spans: list[tuple[int, int]] = []
    head, tail = secret[:m], secret[-m:]
    at = s.find(head)
    while at != -1:
        end = at + m
        while end < len(s) and end - at < len(secret) and s[end] == secret[end - at]:
            end += 1
        spans.append((at, end))
        at = s.find(head, at + 1)
    at = s.find(tail)
    while at != -1:
        start, end = at, at + m
        while start > 0 and end - start < len(secret) and s[start - 1] == secret[-(end - start) - 1]:
            start -= 1
        spans.append((start, end))
        at = s.find(tail, at + 1)
    out, pos = [], 0
    for start, end in sorted(spans):
        if end <= pos:
            continue
        out.append(s[pos:max(pos, start)])
        if start >= pos:
            out.append(REDACTED)
        pos = end
    out.append(s[pos:])
    return "".join(out)


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret this process knows: settings, route keys, credential-named environment variables."""
    found: list[str] = []
    for name in ("llm_api_key", "anthropic_api_key", "telegram_bot_token", "telegram_webhook_secret", "web_token",
                 "langfuse_secret_key", "service_token", "session_secret"):
        value = getattr(settings, name, None)
        if value is not None:
            found.append(value.get_secret_value() if hasattr(value, "get_secret_value") else str(value))
    try:  # every approver's and viewer's token
        found += [token for token, identity in settings.identities() if identity.role != "service"]
    except (ValueError, AttributeError):
        pass
    if settings.database_url:
        password = urlsplit(settings.database_url).password
        if password:
            found.append(password)
    if settings.routes_json:
        try:
            for chain in json.loads(settings.routes_json).values():
                for route in chain:
                    if route.get("api_key"):
                        found.append(str(route["api_key"]))
                    if route.get("api_key_env") and os.environ.get(route["api_key_env"]):
                        found.append(os.environ[route["api_key_env"]])
        except (ValueError, AttributeError, TypeError):
            pass  # the gateway reports a bad NEWSROOM_ROUTES_JSON; here we only collect keys
    # (a variable holding a file's path, HF_TOKEN_PATH say, names where a secret is, it is not one)
    found += [v for k, v in os.environ.items()
              if _SECRET_ENV.search(k) and not k.endswith("PUBLIC_KEY") and not v.startswith("/")]
    return [s for s in found if s and s != "not-needed"]


# --- logs -------------------------------------------------------------------------------------------

_LOG_REDACTION_INSTALLED = False


def install_log_redaction(settings: Settings | None = None) -> None:
    """Scrub secrets from every log record of this process (message, arguments and traceback).

    A record factory rather than a handler filter: it covers every logger and handler, including
    the Agent Server's, and the libraries' own error messages that quote a URL or a key.
    """
    global _LOG_REDACTION_INSTALLED
    if _LOG_REDACTION_INSTALLED:
        return
    scrubber = Scrubber(configured_secrets(settings or get_settings()))
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        if isinstance(record.msg, dict):
            # structlog (the Agent Server's logging) passes its event dict as msg: keep it a dict.
            record.msg = {k: scrubber.text(v) if isinstance(v, str) else v for k, v in record.msg.items()}
        elif isinstance(record.msg, str):
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string must not lose the record
                message = record.msg
            record.msg, record.args = scrubber.text(message), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrubber.text("".join(traceback.format_exception(*record.exc_info)).rstrip())
        return record

    logging.setLogRecordFactory(factory)
    _LOG_REDACTION_INSTALLED = True
