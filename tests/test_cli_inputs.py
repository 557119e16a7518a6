"""CLI input errors that need no database: a bad value is refused with the valid ones."""
from __future__ import annotations

from click.testing import CliRunner

from service.cli import list_cmd


def test_list_refuses_an_unknown_status_and_names_the_valid_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSROOM_DATA_DIR", str(tmp_path / "state"))  # nothing may start a database here
    result = CliRunner().invoke(list_cmd, ["--status", "waiting"])  # the command alone: no logging or signal set-up in pytest
    assert result.exit_code == 2, result.output
    assert "'waiting' is not a status" in result.output
    assert "awaiting_approval" in result.output and "escalated" in result.output
    assert not (tmp_path / "state").exists()
