"""Recovery and retention bookkeeping: run leases, the threads a crash may have cut off, and
keeping only the last N checkpoints of finished threads.

Why a lease per thread (and not only exactly-once publish + idempotent transitions): two processes
driving the same thread from the same checkpoint both call the LLMs, and a writer is not
deterministic, so each could produce a different draft -- under the autonomous approval policy two
different drafts (two publish keys) could both be published, and under the human policy two
branches of the thread could each reach the gate. The publish ledger prevents publishing the SAME
draft twice; the lease prevents the second driver from existing at all.
"""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from storage import maintenance_sql as q
from storage.db import Database
from storage.posts import TERMINAL

# Renewed every third of it while a run goes on; a crashed holder on another host blocks its
# threads this long (one on this host not at all: see holder_is_dead).
DEFAULT_LEASE_S = 30.0


def lease_holder(purpose: str = "run") -> str:
    """A name unique to this process and call site: host:pid:purpose:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{purpose}:{uuid.uuid4().hex[:8]}"


# --- run leases -----------------------------------------------------------------------------------

def holder_is_dead(holder: str) -> bool:
    """True only when the holder is a process of THIS host that no longer exists. A holder on
    another host, or a live (or reused) pid, is presumed alive: we wait for its lease to expire."""
    host, _, rest = holder.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


async def acquire_run_lease(db: Database, thread_id: str, holder: str, *, seconds: float = DEFAULT_LEASE_S,
                            purpose: str = "run") -> bool:
    """True if `holder` now holds the thread's lease: it was free, expired, already ours, or held
    by a dead process of this host (a restart after a crash need not wait out the expiry)."""
    params = {"thread_id": thread_id, "holder": holder, "purpose": purpose, "seconds": seconds}

    async def _work(conn):
        if await (await conn.execute(q.ACQUIRE_RUN_LEASE, params)).fetchone() is not None:
            return True
        current = await (await conn.execute(q.SELECT_RUN_LEASE, params)).fetchone()
        if current is None or not holder_is_dead(current["holder"]):
            return False
        cur = await conn.execute(q.TAKE_OVER_RUN_LEASE, {**params, "dead_holder": current["holder"]})
        return await cur.fetchone() is not None

    return await db.transaction(_work)


async def renew_run_lease(db: Database, thread_id: str, holder: str, *, seconds: float = DEFAULT_LEASE_S) -> bool:
    """False when the lease was lost (expired and taken by another holder)."""

    async def _work(conn):
        cur = await conn.execute(q.RENEW_RUN_LEASE, {"thread_id": thread_id, "holder": holder, "seconds": seconds})
        return await cur.fetchone() is not None

    return await db.transaction(_work)


async def release_run_lease(db: Database, thread_id: str, holder: str) -> None:
    async def _work(conn):
        await conn.execute(q.RELEASE_RUN_LEASE, {"thread_id": thread_id, "holder": holder})

    await db.transaction(_work)


async def live_leases(db: Database) -> dict[str, dict]:
    return {r["thread_id"]: r for r in await db.fetch(q.SELECT_LIVE_LEASES)}


# --- recovery candidates -------------------------------------------------------------------------

@dataclass(frozen=True)
class RecoveryCandidate:
    thread_id: str
    status: str | None  # None: a checkpoint but no post row
    topic: str | None = None
    requester: str | None = None
    source: str | None = None
    # The per-run setting overrides kept with the post (empty: none given, or an older post).
    run_overrides: dict = field(default_factory=dict)


async def recovery_candidates(db: Database, *, stale_after_s: float = 0.0,
                              terminal_window_s: float = 86400.0) -> list[RecoveryCandidate]:
    """Threads whose run may have been cut off; the caller checks each one's checkpoint.

    stale_after_s: skip posts updated more recently than this (a run elsewhere may be alive).
    terminal_window_s: finished posts updated within this window are checked too.
    Needs the checkpoint tables (open the checkpointer first).
    """
    rows = await db.fetch(q.SELECT_RECOVERY_POSTS, {"terminal": [str(s) for s in TERMINAL],
                                                    "terminal_window_s": terminal_window_s,
                                                    "stale_after_s": stale_after_s})
    found = [RecoveryCandidate(r["thread_id"], r["status"], r["topic"], r["requester"], r["source"],
                               dict(r["run_overrides"] or {})) for r in rows]
    found += [RecoveryCandidate(r["thread_id"], None) for r in await db.fetch(q.SELECT_THREADS_WITHOUT_POST)]
    return found


async def decided_gates_waiting(db: Database) -> list[dict]:
    """Approval gates with a human decision whose post still waits for a human."""
    return await db.fetch(q.SELECT_DECIDED_GATES)


# --- checkpoint retention -------------------------------------------------------------------------

@dataclass
class Footprint:
    threads: int
    checkpoints: int
    writes: int
    blobs: int
    bytes: int  # row bytes (pg_column_size) of the threads' checkpoint rows

    def per_thread(self) -> dict[str, float]:
        n = max(1, self.threads)
        return {"checkpoints": self.checkpoints / n, "writes": self.writes / n, "blobs": self.blobs / n,
                "bytes": self.bytes / n}


async def finished_threads(db: Database, *, min_age_s: float = 0.0) -> list[str]:
    rows = await db.fetch(q.SELECT_FINISHED_THREADS, {"terminal": [str(s) for s in TERMINAL], "min_age_s": min_age_s})
    return [r["thread_id"] for r in rows]


async def checkpoint_footprint(db: Database, thread_ids: list[str]) -> Footprint:
    row = await db.fetchone(q.CHECKPOINT_FOOTPRINT, {"threads": list(thread_ids)})
    return Footprint(threads=len(thread_ids), checkpoints=int(row["checkpoints"]), writes=int(row["writes"]),
                     blobs=int(row["blobs"]), bytes=int(row["bytes"]))


async def checkpoint_table_bytes(db: Database) -> int:
    """On-disk size of the three checkpoint tables (with indexes and TOAST)."""
    return int((await db.fetchone(q.CHECKPOINT_TABLE_BYTES))["bytes"])


async def keep_last_checkpoints(db: Database, thread_id: str, keep: int) -> int:
    """Keep the newest `keep` root checkpoints of one thread (with the blobs they reference) and
    the desk-subgraph namespaces called from them; delete the rest. One transaction, retried.
    Returns the root checkpoints deleted. Only for finished threads: a running one may be
    forking from a checkpoint this deletes."""
    if keep < 1:
        raise ValueError("keep must be >= 1: the latest checkpoint is the thread's state")

    async def _work(conn) -> int:
        ids = [r["checkpoint_id"] for r in await (await conn.execute(q.SELECT_ROOT_CHECKPOINT_IDS,
                                                                     {"thread_id": thread_id})).fetchall()]
        kept = ids[:keep]
        if len(ids) <= keep:
            return 0
        p = {"thread_id": thread_id, "kept": kept}
        spaces = await (await conn.execute(q.SELECT_SUBGRAPH_NAMESPACES, p)).fetchall()
        dropped = [r["checkpoint_ns"] for r in spaces if r["root"] not in kept]
        if dropped:
            ns = {"thread_id": thread_id, "namespaces": dropped}
            for stmt in (q.DELETE_NAMESPACE_WRITES, q.DELETE_NAMESPACE_CHECKPOINTS, q.DELETE_NAMESPACE_BLOBS):
                await conn.execute(stmt, ns)
        await conn.execute(q.DELETE_UNKEPT_ROOT_WRITES, p)
        await conn.execute(q.DELETE_UNKEPT_ROOT_CHECKPOINTS, p)
        await conn.execute(q.ORPHAN_KEPT_PARENTS, p)
        await conn.execute(q.DELETE_UNREFERENCED_ROOT_BLOBS, p)
        return len(ids) - len(kept)

    return await db.transaction(_work)


__all__ = [
    "DEFAULT_LEASE_S",
    "Footprint",
    "RecoveryCandidate",
    "acquire_run_lease",
    "checkpoint_footprint",
    "checkpoint_table_bytes",
    "decided_gates_waiting",
    "finished_threads",
    "holder_is_dead",
    "keep_last_checkpoints",
    "lease_holder",
    "live_leases",
    "recovery_candidates",
    "release_run_lease",
    "renew_run_lease",
]
