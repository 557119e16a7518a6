"""All settings, validated at start. Environment variables are documented in README.md."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ConfigError(RuntimeError):
    """Raised with a readable message when the environment holds an invalid setting."""


ProviderKind = Literal["vllm", "llamacpp", "anthropic", "openai"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NEWSROOM_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- storage ---------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "NEWSROOM_DATABASE_URL"),
        description="postgresql://... for PostgreSQL or CockroachDB; unset = embedded PostgreSQL",
    )
    data_dir: Path = Field(default=Path(".newsroom"), description="state folder (embedded db, logs)")
    pool_min_size: int = Field(default=1, ge=0, description="connections kept open per pool")
    pool_max_size: int = Field(default=10, ge=1, description="connections at most per pool")
    pool_max_idle_s: float = Field(default=300.0, gt=0, description="idle connections older than this are closed")
    pool_check_idle_s: float = Field(
        default=2.0, ge=0,
        description="check a pooled connection (one round trip) on checkout only if it sat idle this long; "
                    "0 = check every checkout. A connection broken sooner fails its statement, which the "
                    "transaction and checkpoint retries replace",
    )
    pool_timeout_s: float = Field(default=30.0, gt=0, description="wait for a connection (and for the first connect)")
    db_connect_wait_s: float = Field(
        default=15.0, ge=0,
        description="at start, keep retrying a database that is not reachable yet (connection refused, "
                    "timeout, starting up) this long, then fail with the reason; a wrong password or "
                    "database name fails at once",
    )
    tx_max_attempts: int = Field(default=30, ge=1, le=200, description="attempts per transaction on 40001/40003/connection loss")

    # --- logging ----------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="DEBUG | INFO | WARNING | ERROR (also `newsroom serve`'s Agent Server log, unless LOG_LEVEL is set)")

    # --- LLM ----------------------------------------------------------------------
    llm_base_url: str = Field(
        default="http://127.0.0.1:8765/v1",
        description="OpenAI-compatible endpoint for the writer (vLLM or the local llama.cpp server)",
    )
    llm_provider: ProviderKind = Field(default="llamacpp", description="vllm | llamacpp | openai")
    llm_api_key: SecretStr = Field(default=SecretStr("not-needed"), description="API key of the OpenAI-compatible endpoint")
    writer_model: str = Field(default="newsroom-writer", description="served model / LoRA adapter name")
    judge_model: str = Field(default="newsroom-judge", description="judge model name (must differ from writer)")
    judge_base_url: str | None = Field(default=None, description="judge endpoint; default = llm_base_url")
    judge_provider: ProviderKind | None = Field(default=None, description="default: anthropic if key set, else llm_provider")
    hyde_model: str | None = Field(default=None, description="HyDE model; default = writer model")
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "NEWSROOM_ANTHROPIC_API_KEY"),
        description="set = the judge runs on Anthropic",
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "NEWSROOM_ANTHROPIC_BASE_URL"),
        description="Anthropic API base URL (tests point it at a scripted server)",
    )
    anthropic_judge_model: str = Field(default="claude-sonnet-4-6", description="judge model on Anthropic (the rubric was calibrated on claude-sonnet-4-20250514, now retired)")
    llm_timeout_s: float = Field(default=120.0, gt=0, description="per LLM call attempt")
    llm_max_attempts: int = Field(default=3, ge=1, le=10, description="attempts per route on retryable errors")
    writer_max_tokens: int = Field(default=450, ge=16, description="max tokens of a draft")
    research_max_tokens: int = Field(default=250, ge=16, description="ungrounded research notes")
    judge_max_tokens: int = Field(default=400, ge=16, description="max tokens of a verdict")
    judge_max_attempts: int = Field(default=3, ge=1, le=10, description="invalid verdicts before escalation")
    # LLM gateway (tools/llm.py): routes, retries, breakers, prices.
    routes_json: str | None = Field(
        default=None,
        description='per-role ordered routes, JSON: {"writer": [{"provider": "vllm", "base_url": ..., '
        '"model": ...}, ...], "judge": [...]}; roles not named keep their defaults',
    )
    llm_retry_initial_s: float = Field(default=0.1, ge=0, description="first backoff; doubles, jittered")
    llm_retry_max_s: float = Field(default=5.0, ge=0, description="largest single backoff")
    llm_retry_after_max_s: float = Field(default=30.0, ge=0, description="cap on a server's Retry-After")
    breaker_failure_threshold: int = Field(default=3, ge=1, description="consecutive failures that open it")
    breaker_cooldown_s: float = Field(default=30.0, ge=0, description="open time before one half-open probe")
    llm_adapter_missing: Literal["error", "fallback"] = Field(
        default="fallback",
        description="a route's model absent from /v1/models: error = refuse at start/call; fallback = log, skip it",
    )
    llm_models_cache_s: float = Field(default=60.0, ge=0, description="how long a /v1/models listing is trusted")
    llm_prices_json: str | None = Field(
        default=None,
        description='USD per 1M tokens, JSON {"model": [input, output]}; merged over the built-in table',
    )

    # --- engine -----------------------------------------------------------------------
    max_revisions: int = Field(default=3, ge=0, le=10, description="Editor revision cycles before escalation to a human")
    approval_policy: Literal["human", "escalations_only"] = Field(default="human", description="human: every approved draft waits for a person; escalations_only: approved drafts publish directly, except drafts revised at a human's request")
    site_dir: Path = Field(default=Path("site"), description="static-site publish folder")
    retrieval_top_k: int = Field(default=5, ge=1, le=50, description="chunks cited per post")

    # --- retrieval (tools/embeddings.py, tools/chunking.py, tools/retrieval.py) ----------
    embed_model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="sentence-transformers model: a name (all-MiniLM-L6-v2 is packaged, offline) or a local path",
    )
    embed_device: str = Field(default="cpu", description="torch device for the embedder")
    embed_batch_size: int = Field(default=32, ge=1, le=1024)
    embed_threads: int = Field(
        default=1, ge=1, le=256,
        description="torch CPU threads for the embedder; 1 by default: beside the database and the LLM "
        "server, more threads spin against each other (measured 48 ms vs 424 ms per query on 2 busy cores)",
    )
    chunk_max_tokens: int | None = Field(
        default=None, ge=16, description="chunk size cap in tokens; default and upper bound = the embedder's max sequence"
    )
    chunk_overlap_tokens: int = Field(default=32, ge=0, description="whole trailing sentences carried into the next chunk")
    retrieval_hyde: bool = Field(default=True, description="embed an LLM-written hypothetical answer (HyDE)")
    retrieval_hybrid: bool = Field(
        default=True, description="fuse full-text search by reciprocal rank (eval: top-1 0.923 -> 0.942 with HyDE)")
    retrieval_candidates: int = Field(default=40, ge=1, le=1000, description="candidates per arm before dedup/fusion")
    retrieval_rrf_k: int = Field(default=60, ge=1, description="reciprocal rank fusion constant")
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000, description="pgvector hnsw.ef_search per query")
    hyde_max_tokens: int = Field(default=160, ge=16)

    # --- local LLM server (make demo) ---------------------------------------------------
    local_llm_port: int = Field(default=8765, ge=1, le=65535, description="port of the local SmolLM2 server started on demand")
    local_llm_threads: int = Field(default=2, ge=1, description="CPU threads of the local SmolLM2 server")

    # --- Agent Server ------------------------------------------------------------------
    server_port: int = Field(default=2024, ge=1, le=65535, description="`newsroom serve` port (Agent Server + Studio)")
    server_jobs: int = Field(default=8, ge=1, description="concurrent runs in `newsroom serve`")
    agent_server_url: str = Field(
        default="http://127.0.0.1:2024",
        description="the Agent Server the Telegram bot (polling mode) and `newsroom sweep` talk to",
    )

    # --- Telegram bot (service/telegram_bot.py) ---------------------------------------------
    telegram_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "NEWSROOM_TELEGRAM_BOT_TOKEN"),
        description="the token BotFather gave; unset = no bot, no webhook route",
    )
    telegram_api_base_url: str = Field(
        default="https://api.telegram.org",
        description="Bot API host (a local Bot API server or a test fake); requests go to {url}/bot{token}/{method}",
    )
    telegram_connect_wait_s: float = Field(
        default=0.0, ge=0,
        description="`newsroom bot` start-up: retry an unreachable Bot API this long (a warning per attempt), "
                    "then fail; 0 = keep trying. A refused token fails at once",
    )
    telegram_allowed_chats: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="comma-separated chat ids that may use the bot; empty = nobody",
    )
    telegram_approvers: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="comma-separated Telegram user ids that may approve, revise, reject or cancel",
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        description="webhook mode: the secret_token given to setWebhook; the route refuses requests without it",
    )
    telegram_max_draft_messages: int = Field(
        default=3, ge=1, le=20, description="a longer draft than this many 4096-char messages is sent as a document",
    )

    # --- approval deadline (the sweep: `newsroom sweep` or the Agent Server's background task) ----
    approval_deadline_s: float = Field(default=86400.0, gt=0, description="a draft waiting longer gets one reminder")
    approval_grace_s: float = Field(
        default=86400.0, ge=0, description="after the reminder, this long until the expiry action",
    )
    approval_expiry_action: Literal["escalate", "expire"] = Field(
        default="escalate", description="escalate: mark escalated and notify; expire: reject it (nothing published)",
    )
    approval_sweep_interval_s: float = Field(
        default=60.0, ge=0, description="how often the Agent Server sweeps waiting approvals; 0 = never (use cron)",
    )
    telegram_escalation_chat: int | None = Field(
        default=None, description="chat that receives reminders and escalations too (default: only the post's chat)",
    )

    # --- web approval page (service/http_app.py) -----------------------------------------------
    web_token: SecretStr | None = Field(
        default=None, description="token for the /newsroom/ui pages (login form, or Authorization: Bearer); unset = pages refuse",
    )

    # --- tracing (tools/tracing.py): Langfuse SDK 5 over OpenTelemetry ---------------------------
    langfuse_public_key: str | None = Field(
        default=None, validation_alias=AliasChoices("LANGFUSE_PUBLIC_KEY", "NEWSROOM_LANGFUSE_PUBLIC_KEY"),
        description="Langfuse project public key; tracing is on only when both keys are set",
    )
    langfuse_secret_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("LANGFUSE_SECRET_KEY", "NEWSROOM_LANGFUSE_SECRET_KEY"),
        description="Langfuse project secret key",
    )
    langfuse_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LANGFUSE_BASE_URL", "LANGFUSE_HOST", "NEWSROOM_LANGFUSE_BASE_URL"),
        description="Langfuse host; spans go to {url}/api/public/otel/v1/traces (default https://cloud.langfuse.com)",
    )
    langfuse_timeout_s: int = Field(
        default=2, ge=1, le=60, validation_alias=AliasChoices("LANGFUSE_TIMEOUT", "NEWSROOM_LANGFUSE_TIMEOUT_S"),
        description="seconds per Langfuse export request (whole seconds: the SDK's unit); kept small so a "
        "down host costs little",
    )
    tracing_enabled: bool = Field(default=True, description="false = no tracing even when Langfuse keys are set")
    tracing_capture_content: bool = Field(
        default=True, description="send prompts, replies and drafts (secrets scrubbed); false = only names, usage, scores",
    )
    tracing_flush_timeout_s: float = Field(
        default=2.0, ge=0, description="the most a finished CLI run waits for its spans to be sent",
    )

    @field_validator("telegram_allowed_chats", "telegram_approvers", mode="before")
    @classmethod
    def _split_ids(cls, v):
        # "123, -100456" from the environment; a list from code.
        if v is None or v == "":
            return []
        if isinstance(v, str):
            return [int(x) for x in v.replace(";", ",").split(",") if x.strip()]
        if isinstance(v, int):
            return [v]
        return v

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.startswith(("postgresql://", "postgres://", "cockroachdb://")):
            raise ValueError("must start with postgresql:// (PostgreSQL or CockroachDB)")
        return v.replace("cockroachdb://", "postgresql://", 1)

    @model_validator(mode="after")
    def _check_roles(self) -> "Settings":
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("NEWSROOM_POOL_MIN_SIZE must be <= NEWSROOM_POOL_MAX_SIZE")
        if self.effective_judge_provider != "anthropic" and self.judge_model == self.writer_model and (
            self.judge_url == self.llm_base_url
        ):
            # The Editor must not grade its own writer's output (DESIGN.md: judge != writer).
            raise ValueError(
                "the judge may not be the same model as the writer: set NEWSROOM_JUDGE_MODEL "
                f"to something other than {self.writer_model!r}"
            )
        return self

    # --- derived -------------------------------------------------------------------------
    @property
    def judge_url(self) -> str:
        return self.judge_base_url or self.llm_base_url

    @property
    def effective_judge_provider(self) -> ProviderKind:
        if self.judge_provider:
            return self.judge_provider
        return "anthropic" if self.anthropic_api_key else self.llm_provider

    @property
    def pg_data_dir(self) -> Path:
        return (self.data_dir / "pg").resolve()


def _format_error(err: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for e in err.errors():
        name = "NEWSROOM_" + "_".join(str(p) for p in e["loc"]).upper() if e["loc"] else "(settings)"
        lines.append(f"  {name}: {e['msg']}")
    return "\n".join(lines)


def load_settings(**overrides) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
