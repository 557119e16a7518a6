"""The commands other modules add through the newsroom.commands entry points all reach the CLI:
a plugin that fails to import is skipped quietly (a bare install), so a broken import would
otherwise hide a command (promote-adapter was hidden this way by a renamed helper)."""
from __future__ import annotations

from importlib.metadata import entry_points

from service.cli import PLUGIN_GROUP, main


def test_every_plugin_command_is_registered():
    declared = {ep.name for ep in entry_points(group=PLUGIN_GROUP)}
    assert {"eval-judge", "eval-retrieval", "eval-faithfulness", "promote-adapter"} <= declared
    missing = declared - set(main.commands)
    assert not missing, f"entry-point commands that failed to load: {sorted(missing)}"
