"""vLLM's adapter admin API: load a LoRA adapter into a running server by name, without a restart.

The server must run with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora (deploy/vllm/serve.sh
sets both). POST {base}/load_lora_adapter {"lora_name", "lora_path"}; the adapter is then listed on
/v1/models and served under that name. The path is read by the vLLM process: it must be a folder
that process can see (same host, or a shared volume).
"""
from __future__ import annotations

import httpx


class VLLMAdminError(RuntimeError):
    pass


def _headers(api_key: str | None) -> dict:
    return {"Authorization": f"Bearer {api_key}"} if api_key and api_key != "not-needed" else {}


def listed_models(base_url: str, *, api_key: str | None = None, timeout_s: float = 10.0) -> list[str]:
    try:
        r = httpx.get(base_url.rstrip("/") + "/models", headers=_headers(api_key), timeout=timeout_s)
        r.raise_for_status()
        return [m["id"] for m in r.json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError) as err:
        raise VLLMAdminError(f"cannot list models on {base_url}: {err}") from None


def load_adapter(base_url: str, name: str, path: str, *, api_key: str | None = None, timeout_s: float = 300.0) -> str:
    """Load (or, already loaded, leave) adapter `name` from `path`; returns what happened."""
    if name in listed_models(base_url, api_key=api_key):
        return f"{name} already loaded"
    try:
        r = httpx.post(base_url.rstrip("/") + "/load_lora_adapter", json={"lora_name": name, "lora_path": path},
                       headers=_headers(api_key), timeout=timeout_s)
    except httpx.HTTPError as err:
        raise VLLMAdminError(f"load_lora_adapter on {base_url} failed: {err}") from None
    if r.status_code == 404 and "Loading lora" not in r.text:
        raise VLLMAdminError(f"{base_url} has no /load_lora_adapter: start vLLM with "
                             "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (deploy/vllm/serve.sh does)")
    if r.status_code >= 400:
        raise VLLMAdminError(f"vLLM refused to load adapter {name!r} from {path}: HTTP {r.status_code} {r.text[:500]}")
    if name not in listed_models(base_url, api_key=api_key):
        raise VLLMAdminError(f"vLLM said it loaded {name!r} but does not list it")
    return r.text.strip() or f"{name} loaded"


def unload_adapter(base_url: str, name: str, *, api_key: str | None = None, timeout_s: float = 60.0) -> bool:
    """Unload adapter `name`; False when it was not loaded."""
    try:
        r = httpx.post(base_url.rstrip("/") + "/unload_lora_adapter", json={"lora_name": name},
                       headers=_headers(api_key), timeout=timeout_s)
    except httpx.HTTPError as err:
        raise VLLMAdminError(f"unload_lora_adapter on {base_url} failed: {err}") from None
    if r.status_code == 404:
        return False
    if r.status_code >= 400:
        raise VLLMAdminError(f"vLLM refused to unload {name!r}: HTTP {r.status_code} {r.text[:300]}")
    return True
