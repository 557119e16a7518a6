"""Configuration: one pydantic-settings model read from NEWSROOM_* / standard env vars.

A leaf package: every layer may import it, it imports nothing of ours.
"""
from config.settings import ConfigError, Settings, get_settings, load_settings, reset_settings_cache

__all__ = ["ConfigError", "Settings", "get_settings", "load_settings", "reset_settings_cache"]
