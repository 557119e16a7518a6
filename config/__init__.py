"""Configuration: one pydantic-settings model read from NEWSROOM_* / standard env vars.

A leaf package: every layer may import it, it imports nothing of ours.
"""
from config.settings import (
    MIN_SECRET_LENGTH, ConfigError, Identity, Settings, get_settings, load_settings, reset_settings_cache,
    validate_override,
)
from config.run_config import RUN_OVERRIDE_SETTINGS, RunConfig, run_overrides

__all__ = ["ConfigError", "Identity", "MIN_SECRET_LENGTH", "Settings", "get_settings", "load_settings",
           "reset_settings_cache", "validate_override", "RunConfig", "RUN_OVERRIDE_SETTINGS", "run_overrides"]
