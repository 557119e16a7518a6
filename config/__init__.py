"""Configuration: one pydantic-settings model read from NEWSROOM_* / standard env vars.

A leaf package: every layer may import it, it imports nothing of ours.
"""
from config.run_config import RUN_OVERRIDE_SETTINGS, RunConfig, run_overrides
from config.settings import (
    MIN_SECRET_LENGTH,
    ConfigError,
    Identity,
    Settings,
    get_settings,
    load_settings,
    reset_settings_cache,
    validate_override,
)

__all__ = [
    "MIN_SECRET_LENGTH",
    "RUN_OVERRIDE_SETTINGS",
    "ConfigError",
    "Identity",
    "RunConfig",
    "Settings",
    "get_settings",
    "load_settings",
    "reset_settings_cache",
    "run_overrides",
    "validate_override",
]
