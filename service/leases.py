"""Run leases: one live process drives a thread at a time (storage/maintenance.py explains why the
publish ledger alone is not enough). Used by the in-process engine, recovery and the CLI."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from storage import maintenance
from storage.connect import get_database
from storage.db import Database

log = logging.getLogger(__name__)


class ThreadBusy(RuntimeError):
    """Another live process holds this thread's run lease (it is running it right now)."""


async def _heartbeat(db: Database, thread_id: str, holder: str, lease_s: float) -> None:
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            if not await maintenance.renew_run_lease(db, thread_id, holder, seconds=lease_s):
                log.error("lost the run lease on %s (paused past %.0fs?): another process may take it over",
                          thread_id, lease_s)
                return
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - the next beat tries again; the lease outlives a blip
            log.warning("run lease renewal for %s failed: %s", thread_id, err)


@contextlib.asynccontextmanager
async def run_lease(db: Database, thread_id: str, *, purpose: str = "run", lease_s: float = maintenance.DEFAULT_LEASE_S,
                    wait_s: float = 0.0):
    """Hold the thread's run lease (renewed in the background) for the body; yields False, and
    runs nothing of its own, when another live holder still has it after wait_s."""
    holder = maintenance.lease_holder(purpose)
    deadline = asyncio.get_running_loop().time() + wait_s
    while not await maintenance.acquire_run_lease(db, thread_id, holder, seconds=lease_s, purpose=purpose):
        if asyncio.get_running_loop().time() >= deadline:
            yield False
            return
        await asyncio.sleep(0.1)
    beat = asyncio.create_task(_heartbeat(db, thread_id, holder, lease_s), name=f"lease:{thread_id}")
    try:
        yield True
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        with contextlib.suppress(Exception):  # an expired lease is as good as released
            await maintenance.release_run_lease(db, thread_id, holder)


@contextlib.asynccontextmanager
async def exclusively(thread_id: str):
    """Hold the thread's run lease for the block, or raise ThreadBusy."""
    async with run_lease(await get_database(), thread_id) as held:
        if not held:
            raise ThreadBusy(f"thread {thread_id} is being run by another process right now")
        yield
