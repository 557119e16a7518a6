"""All settings, validated at start. Environment variables are documented in README.md."""
from __future__ import annotations

import functools
import hashlib
import hmac
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ConfigError(RuntimeError):
    """Raised with a readable message when the environment holds an invalid setting."""


# Secrets shorter than this are refused wherever they are set (an empty NEWSROOM_WEB_TOKEN once
# opened the web page): 32 characters of `secrets.token_urlsafe(24)` are 192 bits.
MIN_SECRET_LENGTH = 32
PUBLISH_DESTINATIONS = ("static_site", "webhook", "git", "telegram_channel")
FRONT_MATTER_OPTIONAL = ("thread_id", "publish_key", "draft_version", "model", "requester", "grounded", "scores")
Role = Literal["service", "approver", "viewer"]


class Identity(BaseModel):
    """Who a credential belongs to (service/auth.py): a name and what that role may do."""

    name: str
    role: Role

    @property
    def can_decide(self) -> bool:  # approve/revise/reject, start runs, edit a post's state
        return self.role in ("service", "approver")

    @property
    def is_service(self) -> bool:
        return self.role == "service"


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
    writer_adapter_registry: bool = Field(
        default=False,
        description="the writer serves the promoted adapter of the family NEWSROOM_WRITER_MODEL from the adapter "
                    "registry (`newsroom promote-adapter`); each draft records the adapter's name",
    )
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
    llm_timeout_s: float = Field(default=120.0, gt=0, description="per LLM call attempt (600 with the local Qwen model unless set)")
    llm_max_attempts: int = Field(default=3, ge=1, le=10, description="attempts per route on retryable errors")
    writer_max_tokens: int = Field(default=450, ge=16, le=8192, description="max tokens of a draft")
    research_max_tokens: int = Field(default=250, ge=16, le=4096, description="ungrounded research notes")
    judge_max_tokens: int = Field(default=400, ge=16, le=4096, description="max tokens of a verdict")
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
    run_budget_usd: float | None = Field(
        default=None, ge=0, le=10000,
        description="per-run spend limit in USD (the post's recorded LLM cost): over it, the run stops at the next "
                    "desk boundary and the draft goes to a human with the spend so far (unset = no budget; a run "
                    "may override it with run_budget_usd)")
    estimate_tokens_per_s: float = Field(
        default=60.0, gt=0, le=100000,
        description="generation speed the pre-run time estimate assumes (SmolLM2 on 2 cores: 60-110 tokens/s)")
    estimate_prompt_tokens_per_s: float = Field(
        default=400.0, gt=0, le=1000000, description="prompt-reading speed the pre-run time estimate assumes")
    edit_max_chars: int = Field(default=20000, ge=1000, le=200000,
                                description="longest edited draft a human may submit (every channel: Studio/SDK, web, "
                                            "CLI, Telegram); longer edits are refused and nothing changes")
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
    retrieval_floor: float = Field(
        default=0.25, ge=-1.0, le=1.0,
        description="relevance floor: a retrieved note whose best cosine similarity to a search vector is below "
                    "this is not cited; a topic with nothing above it is researched ungrounded (and says so). "
                    "Measured: the best note of every topic-set and 52-set query >= 0.278, off-topic requests <= 0.200")
    retrieval_hyde_weight: float = Field(
        default=0.5, ge=0.0, le=4.0,
        description="weight of the hypothesis's embedding in the HyDE search vector (query + w x hypothesis); "
                    "0.5 measured best with the local model's hypotheses (evals/bench/RESULTS-retrieval.md)")
    retrieval_aggregate: Literal["max", "sum", "mean"] = Field(
        default="mean",
        description="how chunks make a note's rank: max (its best chunk), sum (of its chunks' fused scores), "
                    "mean (each arm's ranking per note, plus the mean cosine of all its chunks, fused by RRF)")
    research_subquestions: int = Field(default=3, ge=0, le=5, description="sub-questions the Researcher plans (0 = retrieve on the topic alone)")
    research_subquestion_weight: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="weight of each sub-question's rankings against the topic's (1.0) when the Researcher fuses its "
                    "searches; 0 = the topic ranks, sub-questions only add notes after its own (measured: SmolLM2's "
                    "plans at 0.1-1.0 lowered top-1 on topic requests, Qwen's gained nothing in a 2-fold choice; "
                    "see evals/bench/RESULTS-retrieval.md)")
    plan_max_tokens: int = Field(default=160, ge=16, description="max tokens of the research plan (240 on the local Qwen)")
    outline_max_tokens: int = Field(default=120, ge=16, description="max tokens of the Writer's outline (200 on the local Qwen)")
    outline_source: Literal["llm", "plan"] = Field(
        default="llm",
        description="where the first draft's outline comes from: llm (one outline call over the notes) or plan "
                    "(the research plan's sub-questions as the sections, no LLM call; default for the local Qwen, "
                    "where the outline call took 35-40 s of a post and its sections were the plan's questions "
                    "reworded)")
    draft_format: Literal["text", "cited_json", "cited_sections"] = Field(
        default="text",
        description="the first draft's form: text (Markdown with [n] markers the model types), cited_json "
                    "(structured: each sentence names its note, rendered as its [n]; default for the local "
                    "Qwen writer, which left the markers out of free text) or cited_sections (cited_json "
                    "written one call per outline section, each from the notes its outline line names)")
    claims_max_tokens: int = Field(default=400, ge=16, description="max tokens of the batched claim-support verdict")
    rubric_judge: bool = Field(
        default=True,
        description="ask the judge route for a rubric verdict on a draft that passed the citation check; false = such "
                    "a draft goes to a human unjudged (never auto-approved). Off by default on the local Qwen: as the "
                    "rubric judge it approved 30 of 39 labelled drafts people reject (r = -0.09)")
    claim_check: bool = Field(default=True, description="ask the judge route whether each cited claim is supported (after the deterministic citation checks); off by default on the local Qwen, which called every clean planted draft unsupported")
    support_check: bool = Field(default=True, description="the model-free support check between the citation rules and the claim call: sentence embeddings + shared terms flag a cited sentence another note supports clearly better (wrong source) and an uncited sentence that restates a note (uncited claim)")

    # --- web fetch (URLs named in a post request; tools/webfetch.py) ----------------------
    fetch_timeout_s: float = Field(default=10.0, gt=0, le=120, description="a URL fetch's whole time budget (connect, redirects, body)")
    fetch_max_bytes: int = Field(default=2_000_000, ge=1024, le=50_000_000, description="largest page body fetched (decoded); larger is refused")
    fetch_max_redirects: int = Field(default=3, ge=0, le=10, description="redirects followed, each one checked like the first URL")
    fetch_max_urls: int = Field(default=5, ge=0, le=20, description="URLs fetched per post")
    fetch_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="hosts or IP addresses a fetch may reach although they are private, loopback or link-local "
                    "(comma-separated; empty = only public addresses: no SSRF into the local network)")

    # --- local LLM server (make demo) ---------------------------------------------------
    local_model: Literal["qwen2.5-coder-1.5b", "smollm2"] = Field(
        default="qwen2.5-coder-1.5b",
        description="weights of the local llama.cpp server: qwen2.5-coder-1.5b (1.1 GB, assembled once per "
                    "machine by `newsroom models install`) or smollm2 (SmolLM2-135M, 100 MB, fast, writes nonsense)",
    )
    model_cache_dir: Path | None = Field(
        default=None, description="per-machine cache of assembled local weights and converted HF models "
                                  "(default ~/.cache/newsroom/models, or $XDG_CACHE_HOME/newsroom/models)",
    )
    local_llm_port: int = Field(default=8765, ge=1, le=65535, description="port of the local LLM server started on demand")
    local_llm_threads: int = Field(default=2, ge=1, description="CPU threads of the local LLM server")

    # --- Agent Server ------------------------------------------------------------------
    server_port: int = Field(default=2024, ge=1, le=65535, description="`newsroom serve` port (Agent Server + Studio)")
    server_jobs: int = Field(default=8, ge=1, description="concurrent runs in `newsroom serve`")
    agent_server_url: str = Field(
        default="http://127.0.0.1:2024",
        description="the Agent Server the Telegram bot (polling mode) and `newsroom sweep` talk to",
    )

    # --- Telegram bot (service/telegram/) ----------------------------------------------------
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
    telegram_group_messages_per_min: int = Field(
        default=20, ge=1, le=100000,
        description="messages the bot sends to one group per minute at most (Telegram's own limit is 20; "
                    "PTB's AIORateLimiter waits rather than be refused)",
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
    # --- scheduling (issue 16: approve now, publish at a time; recurring topics) -------------------
    timezone: str = Field(
        default="UTC", description="IANA time zone a typed publish time is read in when its chat/user has none "
                                   "(Telegram /timezone sets a chat's own); e.g. Europe/Berlin",
    )
    telegram_escalation_chat: int | None = Field(
        default=None, description="chat that receives reminders and escalations too (default: only the post's chat)",
    )

    # --- web approval page (service/http_app.py) -----------------------------------------------
    web_token: SecretStr | None = Field(
        default=None,
        description="a shared approver token for the /newsroom/ui pages only (login form, or Authorization: Bearer), "
                    f"at least {MIN_SECRET_LENGTH} characters; approver and viewer tokens log in too",
    )
    session_max_age_s: float = Field(
        default=28800.0, gt=0, le=30 * 86400, description="a web login session expires this long after login",
    )
    login_max_failures: int = Field(
        default=5, ge=1, le=1000, description="failed web logins per client address per minute before it gets 429",
    )
    trust_forwarded_proto: bool = Field(
        default=False,
        description="behind a TLS-terminating reverse proxy: trust its X-Forwarded-Proto (cookies get Secure); "
                    "never set it when clients reach the server directly",
    )

    # --- who may use the Agent Server (service/auth.py) -----------------------------------------
    service_token: SecretStr | None = Field(
        default=None,
        description="the service identity (Telegram bot in polling mode, `newsroom sweep`, recovery, scripts); "
                    f"`newsroom serve` refuses to start without it; at least {MIN_SECRET_LENGTH} characters",
    )
    approver_tokens: SecretStr | None = Field(
        default=None,
        description="approvers: comma-separated NAME:TOKEN pairs; may read, start runs, decide, edit state; NAME is "
                    "the reviewer the approval ledger records",
    )
    viewer_tokens: SecretStr | None = Field(
        default=None, description="read-only viewers: comma-separated NAME:TOKEN pairs; may read threads and runs",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="signs web sessions and flash messages; default: derived from NEWSROOM_SERVICE_TOKEN",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["https://smith.langchain.com"],
        description="comma-separated browser origins that may call the Agent Server (Studio's by default); "
                    "other origins get no CORS grant and their requests are refused",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost", "::1"],
        description="comma-separated Host header values the server answers (DNS-rebinding guard); add the "
                    "public name when it sits behind a reverse proxy",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=64 * 1024 * 1024,
        description="largest request body the Agent Server accepts (webhook 1 MiB and login 4 KiB at most)",
    )

    # --- publishing --------------------------------------------------------------------------------
    publish_front_matter: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="extra front matter published with each post, comma-separated, from: thread_id, publish_key, "
                    "draft_version, model, requester, grounded, scores (always: title, date, sources)",
    )

    publish_destinations: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["static_site"],
        description="comma-separated destinations each post is published to, each exactly once (one ledger row "
                    f"per post and destination), from: {', '.join(PUBLISH_DESTINATIONS)}",
    )
    webhook_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s]{1,2000}$",
        description="the webhook destination: POSTed a JSON body per post, with an HMAC-SHA256 signature and an "
                    "Idempotency-Key header (README, Destinations)",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="the webhook's HMAC-SHA256 signing key (at least 32 characters)")
    webhook_max_attempts: int = Field(default=5, ge=1, le=20,
                                      description="webhook attempts per publish (retried with backoff on a network "
                                                  "error, 408, 429 or 5xx; any other answer but 2xx fails at once)")
    webhook_backoff_s: float = Field(default=1.0, ge=0.0, le=60.0,
                                     description="the first retry's wait; it doubles per attempt (capped at 30 s)")
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120.0, description="per webhook request")
    publish_telegram_chat: str | None = Field(
        default=None, pattern=r"^(-?[0-9]{1,20}|@[A-Za-z0-9_]{4,64})$",
        description="the telegram_channel destination: the channel (@name or chat id) the bot posts each post's "
                    "title, summary and link to (the bot must be an admin of it; TELEGRAM_BOT_TOKEN)")
    publish_link_base: str | None = Field(
        default=None, pattern=r"^https?://[^\s]{1,1000}$",
        description="public URL of the static site's posts/ folder: the Telegram channel post links "
                    "<this><slug>.html")
    git_remote: str | None = Field(
        default=None, min_length=1, max_length=2000,
        description="the git destination's remote (a path or URL git can push to): each post is committed as "
                    "Markdown with front matter and pushed")
    git_branch: str = Field(default="main", pattern=r"^[A-Za-z0-9._/-]{1,100}$",
                            description="the branch the git destination commits to")
    git_content_dir: str = Field(default="content/posts", pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$",
                                 description="the Hugo/Jekyll-style folder of the posts in that repository")
    git_author: str = Field(default="newsroom <newsroom@localhost>", pattern=r"^[^<>\n]{1,100} <[^<>\s]{1,200}>$",
                            description="author and committer of the git destination's commits")

    # --- prompts -----------------------------------------------------------------------------------
    judge_prompt: str = Field(
        default="editor.judge@2", pattern=r"^editor\.judge@[0-9]{1,4}$",
        description="the Editor's judge prompt (name@version); @1 is the original, @2 puts the draft and notes "
                    "in delimited data blocks. A version becomes the default only by naming it here, after "
                    "`newsroom eval-judge --prompt editor.judge@N` compared it",
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

    @field_validator("fetch_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, v):
        if v is None or v == "":
            return []
        if isinstance(v, str):
            return [x.strip().lower() for x in v.split(",") if x.strip()]
        return [str(x).strip().lower() for x in v]

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

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # config is a leaf: zoneinfo itself, not agents/

        try:
            return ZoneInfo(v.strip()).key
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}: use an IANA name such as Europe/Berlin or UTC") from None

    @field_validator("publish_destinations")
    @classmethod
    def _check_destinations(cls, v: list[str]) -> list[str]:
        unknown = [x for x in v if x not in PUBLISH_DESTINATIONS]
        if unknown or not v or len(set(v)) != len(v):
            raise ValueError(f"{', '.join(v) or '(none)'}: name each destination once, from {', '.join(PUBLISH_DESTINATIONS)}")
        return v

    @field_validator("cors_origins", "allowed_hosts", "publish_front_matter", "publish_destinations", mode="before")
    @classmethod
    def _split_names(cls, v):
        if v is None:
            return []
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            if origin == "*" or not origin.startswith(("https://", "http://")) or origin.count("/") != 2:
                raise ValueError(f"{origin!r} is not an origin like https://smith.langchain.com ('*' is refused)")
        return v

    @field_validator("publish_front_matter")
    @classmethod
    def _check_front_matter(cls, v: list[str]) -> list[str]:
        unknown = [x for x in v if x not in FRONT_MATTER_OPTIONAL]
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}: choose from {', '.join(FRONT_MATTER_OPTIONAL)}")
        return v

    @field_validator("web_token", "service_token", "telegram_webhook_secret", "session_secret", "webhook_secret",
                     mode="before")
    @classmethod
    def _strong_secret(cls, v):
        # Set means set: an empty or short value is an error, never "no secret" or a weak one.
        raw = v.get_secret_value() if hasattr(v, "get_secret_value") else v
        if raw is not None and len(str(raw).strip()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters (got {len(str(raw).strip())}); "
                             "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return v

    @field_validator("approver_tokens", "viewer_tokens", mode="before")
    @classmethod
    def _check_token_pairs(cls, v):
        raw = v.get_secret_value() if hasattr(v, "get_secret_value") else v
        if raw is None:
            return v
        _parse_token_pairs(str(raw))  # raises ValueError with what is wrong (never the token itself)
        return v

    @field_validator("local_model", mode="before")
    @classmethod
    def _local_model_alias(cls, v):
        # Short names people type; tools/model_store.py holds the specs of the two keys.
        aliases = {"qwen": "qwen2.5-coder-1.5b", "qwen2.5-coder": "qwen2.5-coder-1.5b", "smollm2-135m": "smollm2"}
        return aliases.get(v.strip().lower(), v.strip().lower()) if isinstance(v, str) else v

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.startswith(("postgresql://", "postgres://", "cockroachdb://")):
            raise ValueError("must start with postgresql:// (PostgreSQL or CockroachDB)")
        return v.replace("cockroachdb://", "postgresql://", 1)

    @model_validator(mode="after")
    def _local_model_defaults(self) -> Settings:
        # The 1.5B local model decodes ~11 tokens/s on 2 quiet cores and several times slower on
        # busy ones; a retried timeout only queues behind the generation still running on the
        # one-request-at-a-time llama.cpp server. Unless set explicitly: a longer per-call timeout.
        if (self.local_model == "qwen2.5-coder-1.5b" and self.llm_provider == "llamacpp"
                and "llm_timeout_s" not in self.model_fields_set):
            self.llm_timeout_s = 600.0
        if self.local_model == "qwen2.5-coder-1.5b" and self.llm_provider == "llamacpp":
            # Measured on Qwen (evals/bench/cited_drafts.py): plans of 144-157 tokens (160 cut 4 of 11
            # off), outlines of ~53 (one of 120+ seen); in free text it left the [n] markers out.
            for name, value in (("draft_format", "cited_json"), ("plan_max_tokens", 240),
                                ("outline_max_tokens", 200), ("outline_source", "plan"),
                                # As the per-claim checker it called every clean planted draft
                                # unsupported (4 of 4): the rules + support check are its gate.
                                ("claim_check", False),
                                # Its rubric verdicts do not track people's (Judge calibration):
                                # a human judges what passes the citation check.
                                ("rubric_judge", False)):
                if name not in self.model_fields_set:
                    setattr(self, name, value)
        return self

    @model_validator(mode="after")
    def _check_webhook(self) -> Settings:
        if "webhook" in self.publish_destinations and (self.webhook_url is None or self.webhook_secret is None):
            raise ValueError("NEWSROOM_PUBLISH_DESTINATIONS names webhook: set NEWSROOM_WEBHOOK_URL and "
                             "NEWSROOM_WEBHOOK_SECRET (a webhook is never sent unsigned)")
        if "telegram_channel" in self.publish_destinations and (self.publish_telegram_chat is None
                                                                or self.telegram_bot_token is None):
            raise ValueError("NEWSROOM_PUBLISH_DESTINATIONS names telegram_channel: set NEWSROOM_PUBLISH_TELEGRAM_CHAT "
                             "and TELEGRAM_BOT_TOKEN")
        if "git" in self.publish_destinations and self.git_remote is None:
            raise ValueError("NEWSROOM_PUBLISH_DESTINATIONS names git: set NEWSROOM_GIT_REMOTE")
        return self

    @model_validator(mode="after")
    def _check_roles(self) -> Settings:
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
        if self.service_token is not None:
            tokens = [self.service_token.get_secret_value()] + [t for _, t in self._pairs(self.approver_tokens)] \
                + [t for _, t in self._pairs(self.viewer_tokens)]
            if len(set(tokens)) != len(tokens):
                raise ValueError("the service, approver and viewer tokens must all differ")
        return self

    # --- identities (service/auth.py, service/web/auth.py) ---------------------------------------
    @staticmethod
    def _pairs(value: SecretStr | None) -> list[tuple[str, str]]:
        return _parse_token_pairs(value.get_secret_value()) if value is not None else []

    def identities(self) -> list[tuple[str, Identity]]:
        """(token, identity) for every configured credential of the Agent Server."""
        out: list[tuple[str, Identity]] = []
        if self.service_token is not None:
            out.append((self.service_token.get_secret_value(), Identity(name="service", role="service")))
        out += [(token, Identity(name=name, role="approver")) for name, token in self._pairs(self.approver_tokens)]
        out += [(token, Identity(name=name, role="viewer")) for name, token in self._pairs(self.viewer_tokens)]
        return out

    def identify(self, token: str | None) -> Identity | None:
        """The identity a presented credential belongs to, compared in constant time with each one."""
        if not token:
            return None
        given = token.strip().encode()
        found = None
        for secret, identity in self.identities():
            if hmac.compare_digest(given, secret.encode()) and found is None:
                found = identity  # no early exit: every configured secret is compared
        return found

    def require_server_secrets(self) -> None:
        """`newsroom serve` (and the Agent Server's auth module) start only with a service token:
        no credentials configured must never mean an open server."""
        if self.service_token is None:
            raise ConfigError(
                "invalid configuration:\n  NEWSROOM_SERVICE_TOKEN: required by `newsroom serve` (every Agent Server "
                f"route needs a credential); set it to at least {MIN_SECRET_LENGTH} random characters, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'. Approvers: "
                "NEWSROOM_APPROVER_TOKENS=name:token; viewers: NEWSROOM_VIEWER_TOKENS (README, Security)")

    def signing_key(self, purpose: str) -> bytes:
        """A key for one purpose (web sessions, flash messages), from NEWSROOM_SESSION_SECRET or the
        service token; domain-separated so one signed value is never valid as another."""
        base = self.session_secret or self.service_token
        if base is None:
            raise ConfigError("NEWSROOM_SERVICE_TOKEN (or NEWSROOM_SESSION_SECRET) is needed to sign web sessions")
        return hmac.new(base.get_secret_value().encode(), f"newsroom:{purpose}".encode(), hashlib.sha256).digest()

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


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,59}$")


def _parse_token_pairs(raw: str) -> list[tuple[str, str]]:
    """NAME:TOKEN,NAME:TOKEN -> [(name, token)]; a bad entry raises ValueError naming its position."""
    pairs: list[tuple[str, str]] = []
    for i, entry in enumerate(x.strip() for x in raw.split(",")):
        if not entry:
            continue
        name, sep, token = entry.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not _NAME.match(name):
            raise ValueError(f"entry {i + 1} must be NAME:TOKEN with a NAME of letters, digits, ' ._@-' (60 at most)")
        if len(token) < MIN_SECRET_LENGTH:
            raise ValueError(f"the token of {name!r} must be at least {MIN_SECRET_LENGTH} characters (got {len(token)})")
        if any(n == name for n, _ in pairs):
            raise ValueError(f"{name!r} is named twice")
        pairs.append((name, token))
    return pairs


def _format_error(err: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for e in err.errors():
        name = "NEWSROOM_" + "_".join(str(p) for p in e["loc"]).upper() if e["loc"] else "(settings)"
        lines.append(f"  {name}: {e['msg']}")
    return "\n".join(lines)


@functools.cache
def _field_adapter(name: str) -> TypeAdapter:
    field = Settings.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, *field.metadata]) if field.metadata else TypeAdapter(field.annotation)


def validate_override(name: str, value):
    """A per-run override (config["configurable"]) checked against the setting's own type and
    bounds: a run may lower max_revisions, never set it to 10**9. Raises ConfigError."""
    if name not in Settings.model_fields:
        raise ConfigError(f"{name!r} is not a setting")
    try:
        return _field_adapter(name).validate_python(value)
    except ValidationError as err:
        raise ConfigError(f"run override {name}={str(value)[:40]!r}: {err.errors()[0]['msg']}") from None


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
