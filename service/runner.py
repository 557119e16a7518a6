"""The operations of service/operations.py on the in-process engine (LocalEngine: our graph on our
checkpointer): what the CLI, the demo, tests and scripts call."""
from __future__ import annotations

from typing import Any

from service import operations
from service.engine import LocalEngine, ProgressFn, RunSnapshot, latest_interrupt, new_thread_id, snapshot
from service.leases import ThreadBusy
from service.operations import (
    DraftChanged,
    InvalidRequest,
    NothingToCancel,
    NothingToResume,
    NothingToRetry,
    checked_input,
    kept_overrides,
)

engine = LocalEngine()

__all__ = [
    "DraftChanged",
    "InvalidRequest",
    "NothingToCancel",
    "NothingToResume",
    "NothingToRetry",
    "ProgressFn",
    "RunSnapshot",
    "ThreadBusy",
    "cancel",
    "checked_input",
    "current",
    "drive",
    "drive_exclusively",
    "kept_overrides",
    "latest_interrupt",
    "new_thread_id",
    "resume",
    "retry",
    "snapshot",
    "start_post",
]


async def drive(thread_id: str, graph_input: Any, *, progress: ProgressFn | None = None,
                overrides: dict | None = None, metadata: dict | None = None) -> RunSnapshot:
    """Run until the graph ends or stops at the approval interrupt; report each desk's step."""
    return await engine.run(thread_id, graph_input, progress=progress, overrides=overrides, metadata=metadata)


async def drive_exclusively(thread_id: str, graph_input: Any, **kwargs) -> RunSnapshot:
    """drive() under the thread's run lease, so a recoverer never drives a thread a live CLI run holds."""
    async with engine.exclusively(thread_id):
        return await drive(thread_id, graph_input, **kwargs)


async def current(thread_id: str) -> RunSnapshot:
    return await engine.current(thread_id)


async def start_post(topic: str, **kwargs) -> RunSnapshot:
    return await operations.start(engine, topic, **kwargs)


async def resume(thread_id: str, value: Any, **kwargs) -> RunSnapshot:
    return await operations.resume(engine, thread_id, value, **kwargs)


async def retry(thread_id: str, **kwargs) -> RunSnapshot:
    return await operations.retry(engine, thread_id, **kwargs)


async def cancel(thread_id: str, *, reviewer: str) -> operations.Cancelled:
    from storage.connect import get_database

    return await operations.cancel(engine, await get_database(), thread_id, reviewer=reviewer, via="cli")
