"""Configuration: one pydantic-settings model read from NEWSROOM_* / standard env vars.

A leaf package: every layer may import it, it imports nothing of ours.
"""
from config.settings import (
    MIN_SECRET_LENGTH, ConfigError, Identity, Settings, get_settings, load_settings, reset_settings_cache,
    validate_override,
)

__all__ = ["ConfigError", "Identity", "MIN_SECRET_LENGTH", "Settings", "get_settings", "load_settings",
           "reset_settings_cache", "validate_override"]
