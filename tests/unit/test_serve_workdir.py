"""`newsroom serve` runs the Agent Server in a folder of its own data dir, so its run queue
(.langgraph_api) is never shared with a server of another data dir (another test, a benchmark)."""
from __future__ import annotations

import json
from pathlib import Path

from config import load_settings
from service.cli.server import _agent_server_workdir

ROOT = Path(__file__).resolve().parents[2]


def test_the_server_folder_is_in_the_data_dir_with_absolute_paths(tmp_path):
    settings = load_settings(data_dir=tmp_path / "state")
    workdir = _agent_server_workdir(settings, ROOT)
    assert workdir == (tmp_path / "state" / "agent-server").resolve()
    config = json.loads((workdir / "langgraph.json").read_text())
    original = json.loads((ROOT / "langgraph.json").read_text())
    assert set(config["graphs"]) == set(original["graphs"])
    specs = [*config["graphs"].values(), config["checkpointer"]["path"], config["http"]["app"]]
    for spec in specs:
        path, _, attr = spec.partition(":")
        assert Path(path).is_absolute() and Path(path).is_file() and attr, spec
    assert config["dependencies"] == [str(ROOT)]
    # Two data dirs, two folders: their servers never see each other's runs.
    other = _agent_server_workdir(load_settings(data_dir=tmp_path / "other"), ROOT)
    assert other != workdir
