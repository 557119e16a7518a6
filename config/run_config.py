"""RunConfig: the settings one run may override in config["configurable"] (Studio, the SDK, tests,
a resumed run), read once per graph node, like open_deep_research's
Configuration.from_runnable_config.

Its fields ARE the whitelist: the only keys kept with the post and handed back when recovery
resumes the run (configurable also carries the Agent Server's own keys and whatever a client sends).
Each field has its setting's own type and bounds (config/settings.py is the one source of both),
so a run may lower max_revisions, never set it to 10**9.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, create_model

from config.settings import ConfigError, Settings, get_settings, validate_override

log = logging.getLogger(__name__)

RUN_OVERRIDE_SETTINGS = ("approval_policy", "max_revisions", "retrieval_top_k", "research_max_tokens",
                         "writer_max_tokens", "judge_max_attempts", "judge_max_tokens", "research_subquestions",
                         "retrieval_floor", "fetch_max_urls", "plan_max_tokens", "outline_max_tokens",
                         "claims_max_tokens", "claim_check", "support_check", "run_budget_usd", "draft_format",
                         "outline_source", "rubric_judge")


class _RunConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_runnable_config(cls, config: Mapping[str, Any] | None, settings: Settings | None = None) -> RunConfig:
        """Every field: the run's override when it is within the setting's bounds, else the
        environment's setting. An override out of bounds (an assistant's config reaches a node
        unchecked by the server's auth) is ignored with a warning, never obeyed."""
        settings = settings or get_settings()
        configurable = (config or {}).get("configurable") or {}
        values = {}
        for name in cls.model_fields:
            value = configurable.get(name)
            if value is None:
                values[name] = getattr(settings, name)
                continue
            try:
                values[name] = validate_override(name, value)
            except ConfigError as err:
                log.warning("%s: using NEWSROOM_%s instead", err, name.upper())
                values[name] = getattr(settings, name)
        return cls.model_validate(values)


def _field(name: str):
    field = Settings.model_fields[name]
    annotation = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return (annotation, ...)


RunConfig = create_model("RunConfig", __base__=_RunConfigBase, __module__=__name__,
                         **{name: _field(name) for name in RUN_OVERRIDE_SETTINGS})
RunConfig.__doc__ = __doc__


def run_overrides(configurable: Mapping[str, Any] | None) -> dict:
    """The whitelisted per-run overrides in a run's configurable (JSON scalars, None dropped): what
    is kept with the post."""
    return {k: v for k, v in (configurable or {}).items()
            if k in RunConfig.model_fields and isinstance(v, (str, int, float, bool))}
