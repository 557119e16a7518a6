"""What the drills and benchmarks share: a private embedded PostgreSQL and a clean environment."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

SECRETS = ("ANTHROPIC_API_KEY", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "TELEGRAM_BOT_TOKEN")


@contextlib.contextmanager
def private_postgres(state_dir: Path | None = None, *, keep: bool = False) -> Iterator[tuple[str, Path]]:
    """Start an embedded PostgreSQL (SERIALIZABLE, as configured by storage/embedded.py) in a temp
    data dir, point DATABASE_URL and the state/site dirs at it, and stop it afterwards.
    Yields (url, state dir)."""
    from storage.embedded import start_embedded, stop_embedded

    state_dir = Path(state_dir or tempfile.mkdtemp(prefix="newsroom-eval-")).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    url = start_embedded(state_dir / "pg", keep_running=True)
    os.environ.update({"DATABASE_URL": url, "NEWSROOM_DATA_DIR": str(state_dir),
                       "NEWSROOM_SITE_DIR": str(state_dir / "site"),
                       "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "1"})
    for name in SECRETS:
        os.environ.pop(name, None)
    from config import reset_settings_cache

    reset_settings_cache()
    try:
        yield url, state_dir
    finally:
        if not keep:
            stop_embedded(state_dir / "pg")


def use_scripted_llm(llm) -> None:
    """Route every LLM role to the scripted server (tests/scripted_llm.py)."""
    os.environ.update({"NEWSROOM_LLM_BASE_URL": llm.base_url, "NEWSROOM_LLM_PROVIDER": "llamacpp"})
    from config import reset_settings_cache
    from tools.llm import reset_gateway

    reset_settings_cache()
    reset_gateway()
