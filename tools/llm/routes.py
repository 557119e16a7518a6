"""Routes (which provider, endpoint and model serve a role) and prices (what a call costs)."""
from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from config import ConfigError, Settings

Role = Literal["writer", "judge", "hyde", "researcher"]
ROLES: tuple[str, ...] = ("writer", "judge", "hyde", "researcher")
ProviderKind = Literal["vllm", "llamacpp", "openai", "anthropic"]
OPENAI_COMPATIBLE = frozenset({"vllm", "llamacpp", "openai"})
ANTHROPIC_DEFAULT_URL = "https://api.anthropic.com"


# --- routes --------------------------------------------------------------------------------

class Route(BaseModel):
    """One way to serve a role: a provider kind at an endpoint, with a model name."""

    model_config = ConfigDict(extra="forbid")

    provider: ProviderKind
    model: str
    base_url: str | None = Field(default=None, description="None = the provider's default from settings")
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(default=None, description="read the key from this env var instead")
    require_listed: bool | None = Field(
        default=None,
        description="the model must appear on GET /v1/models (default: yes for vllm, whose LoRA "
        "adapters are listed; no for llamacpp, which echoes any model name anyway)",
    )
    follow_registry: bool = Field(
        default=False,
        description="the model is an adapter family: serve its promoted adapter from the adapter registry "
        "(newsroom promote-adapter) when one is promoted and listed, else `model` itself",
    )
    price_in: float | None = Field(default=None, ge=0, description="USD per 1M input tokens (overrides table)")
    price_out: float | None = Field(default=None, ge=0, description="USD per 1M output tokens")

    @property
    def must_be_listed(self) -> bool:
        return self.require_listed if self.require_listed is not None else self.provider == "vllm"

    def endpoint(self, settings: Settings) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.provider == "anthropic":
            return (settings.anthropic_base_url or ANTHROPIC_DEFAULT_URL).rstrip("/")
        return settings.llm_base_url.rstrip("/")

    def key(self, settings: Settings) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        if self.provider == "anthropic":
            return settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
        return settings.llm_api_key.get_secret_value()

    def label(self, settings: Settings) -> str:
        return f"{self.provider}:{self.model}@{self.endpoint(settings)}"


def default_routes(settings: Settings) -> dict[str, list[Route]]:
    """Routes from the plain settings (DESIGN.md): writer on the local/vLLM endpoint, judge on
    Anthropic when a key is set (then the local judge model as fallback), HyDE on the HyDE or
    writer model."""
    local = settings.llm_provider
    writer = [Route(provider=local, base_url=settings.llm_base_url, model=settings.writer_model,
                    follow_registry=settings.writer_adapter_registry)]
    local_judge = Route(
        provider=(settings.judge_provider if settings.judge_provider not in (None, "anthropic") else local),
        base_url=settings.judge_url, model=settings.judge_model,
    )
    if settings.effective_judge_provider == "anthropic":
        judge = [Route(provider="anthropic", model=settings.anthropic_judge_model)]
        if settings.judge_model != settings.writer_model or settings.judge_url != settings.llm_base_url:
            judge.append(local_judge)
    else:
        judge = [local_judge]
    hyde = [Route(provider=local, base_url=settings.llm_base_url, model=settings.hyde_model or settings.writer_model)]
    researcher = [Route(provider=local, base_url=settings.llm_base_url, model=settings.writer_model)]
    return {"writer": writer, "judge": judge, "hyde": hyde, "researcher": researcher}


_ROUTES_ADAPTER = TypeAdapter(dict[str, list[Route]])


def routes_from_settings(settings: Settings) -> dict[str, list[Route]]:
    """default_routes overlaid with NEWSROOM_ROUTES_JSON (roles named there replace the default)."""
    routes = default_routes(settings)
    if settings.routes_json:
        try:
            custom = _ROUTES_ADAPTER.validate_json(settings.routes_json)
        except ValidationError as err:
            raise ConfigError(f"invalid NEWSROOM_ROUTES_JSON: {err}") from None
        unknown = set(custom) - set(ROLES)
        if unknown:
            raise ConfigError(f"NEWSROOM_ROUTES_JSON: unknown roles {sorted(unknown)}; known: {list(ROLES)}")
        for role, chain in custom.items():
            if not chain:
                raise ConfigError(f"NEWSROOM_ROUTES_JSON: role {role!r} has no routes")
            routes[role] = chain
    # The Editor must not grade its own writer's output: refuse a judge route equal to the first writer route.
    w = routes["writer"][0]
    for j in routes["judge"]:
        if j.model == w.model and j.endpoint(settings) == w.endpoint(settings):
            raise ConfigError(f"judge route {j.label(settings)} is the writer's model: the judge must differ")
    return routes


# --- prices --------------------------------------------------------------------------------

# USD per 1M tokens (input, output). Local models (vLLM adapter, llama.cpp) cost 0 unless listed.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4": (15.0, 75.0),  # 4 and 4.1; newer Opus ids not listed here fall back to this (an over-estimate)
    "claude-opus-4-5": (5.0, 25.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-haiku-4": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4o": (2.5, 10.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1": (2.0, 8.0),
}
_PRICES_ADAPTER = TypeAdapter(dict[str, tuple[float, float]])


def price_table(settings: Settings) -> dict[str, tuple[float, float]]:
    table = dict(DEFAULT_PRICES)
    if settings.llm_prices_json:
        try:
            table.update(_PRICES_ADAPTER.validate_json(settings.llm_prices_json))
        except ValidationError as err:
            raise ConfigError(f"invalid NEWSROOM_LLM_PRICES_JSON: {err}") from None
    return table


def price_for(model: str, table: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Exact name first, then the longest table key the model name starts with (dated ids)."""
    if model in table:
        return table[model]
    best = max((k for k in table if model.startswith(k)), key=len, default=None)
    return table[best] if best else (0.0, 0.0)


def cost_usd(route: Route, model: str, tokens_in: int, tokens_out: int, table: dict[str, tuple[float, float]]) -> float:
    p_in, p_out = price_for(model, table)
    if route.price_in is not None:
        p_in = route.price_in
    if route.price_out is not None:
        p_out = route.price_out
    return (tokens_in * p_in + tokens_out * p_out) / 1_000_000


def role_prices(settings: Settings) -> dict[str, tuple[str, float, float]]:
    """Per role, (model, USD per 1M input tokens, per 1M output tokens) of its first route, as
    cost_usd would charge it: what a pre-run estimate prices each call at."""
    table = price_table(settings)
    out: dict[str, tuple[str, float, float]] = {}
    for role, chain in routes_from_settings(settings).items():
        route = chain[0]
        p_in, p_out = price_for(route.model, table)
        out[role] = (route.model, route.price_in if route.price_in is not None else p_in,
                     route.price_out if route.price_out is not None else p_out)
    return out

