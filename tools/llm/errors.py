"""What a call returns and how it fails: the result, the errors callers catch, and the
classification of SDK errors the retry loop and the breakers act on."""
from __future__ import annotations

import email.utils
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anthropic
import openai
from pydantic import BaseModel, Field

from config import ConfigError

# --- results and errors ----------------------------------------------------------------------

class LLMResult(BaseModel):
    text: str
    model: str
    provider: str
    endpoint: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_ms: int = Field(default=0, description="whole call, retries and fallbacks included")
    attempts: int = Field(default=1, description="HTTP attempts over all routes tried")
    role: str = ""
    route_index: int = Field(default=0, description="index of the serving route in the role's chain")
    finish_reason: str | None = None


class LLMError(RuntimeError):
    pass


class LLMOutputInvalid(LLMError):
    """The model answered, but its reply is not valid for the schema. The call is recorded."""

    def __init__(self, raw_text: str, errors: list[dict] | str, result: LLMResult):
        super().__init__(raw_text, errors)
        self.raw_text, self.errors, self.result = raw_text, errors, result

    def __str__(self) -> str:
        return f"{self.result.model or 'the model'} returned output that does not validate: {short_text(self.errors)}"


@dataclass
class RouteFailure:
    route: str
    reason: str


class LLMUnavailable(LLMError):
    """Every route of the role failed."""

    def __init__(self, role: str, failures: list[RouteFailure]):
        self.role, self.failures = role, failures
        detail = "; ".join(f"{f.route}: {f.reason}" for f in failures) or "no route configured"
        super().__init__(f"no LLM route served role {role!r}: {detail}")


class LLMAdapterMissing(ConfigError):
    """A route's model (a LoRA adapter's served name) is not listed on its endpoint's /v1/models
    and NEWSROOM_LLM_ADAPTER_MISSING=error."""


class LLMTimeout(LLMError):
    pass


class DeadlineExceeded(LLMError):
    """The call's overall deadline passed (internal: ends the route loop)."""


class ModelNotListed(LLMError):
    pass


def short_text(obj: Any, n: int = 300) -> str:
    s = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return s if len(s) <= n else s[:n] + "..."


# --- error classification ---------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorClass:
    retryable: bool
    endpoint_failure: bool  # counts toward the endpoint's breaker
    retry_after_s: float | None = None


def retry_after_of(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def classify(exc: BaseException) -> ErrorClass:
    if isinstance(exc, (LLMTimeout, openai.APITimeoutError, anthropic.APITimeoutError)):
        return ErrorClass(True, True)
    if isinstance(exc, (openai.APIConnectionError, anthropic.APIConnectionError)):
        return ErrorClass(True, True)
    if isinstance(exc, (openai.APIStatusError, anthropic.APIStatusError)):
        status = exc.status_code
        if status == 429:
            # The endpoint is alive and asks us to slow down: retry after its word, no breaker count.
            return ErrorClass(True, False, retry_after_of(exc.response))
        if status == 408 or status >= 500:
            return ErrorClass(True, True, retry_after_of(exc.response))
        return ErrorClass(False, False)  # 400/401/404/422: this route cannot serve, try the next
    if isinstance(exc, (openai.APIResponseValidationError, anthropic.APIResponseValidationError)):
        return ErrorClass(False, True)
    return ErrorClass(False, False)


