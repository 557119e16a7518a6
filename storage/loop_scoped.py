"""One shared resource per event loop (a Database, an LLM gateway's SDK clients), keyed by the loop
object itself and closed with it.

Why not a dict keyed by id(loop): an id is reused once its loop is freed, so a new loop could be
handed a pool bound to a dead one, and nothing ever closed those entries. Here the key is held
weakly, and each entry is tied to its loop's life twice:
 - a guard task that only waits: asyncio.run() (and asyncio.Runner, which pytest-asyncio uses)
   cancels every task left when its main coroutine returns, and the guard closes the resource
   then, alongside the resource's own background tasks. That is the close that matters for a
   psycopg pool: its maintenance workers catch CancelledError around a task (a connect for pool
   growth, say) and go back to waiting on their queue, so a worker cancelled mid-task never ends
   and asyncio.run's cancellation waits for it forever, unless the pool is closed then (close()
   sends each worker a stop message and waits for them at most 5 s);
 - a suspended async generator, for a guard that never got to run (cancelled before its first
   step): the loop's async-generator shutdown (loop.shutdown_asyncgens, after the cancellation)
   runs the generator's `finally`, which closes the resource while the loop can still run it.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("closer", "detached", "guard", "value")

    def __init__(self, value: T):
        self.value = value
        self.closer: AsyncIterator[None] | None = None
        self.guard: asyncio.Task[None] | None = None  # held here: the loop only keeps a weak reference
        self.detached = False  # forgotten (reset) or already closed: the loop's shutdown leaves it alone


class LoopScoped(Generic[T]):
    """`get()` the running loop's value, `put()` one, `close()` it early; the loop's shutdown closes
    whatever is left with `close_value`."""

    def __init__(self, name: str, close_value: Callable[[T], Awaitable[None]]):
        self.name = name
        self._close_value = close_value
        self._entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry[T]] = weakref.WeakKeyDictionary()
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    def get(self) -> T | None:
        entry = self._entries.get(asyncio.get_running_loop())
        return entry.value if entry is not None else None

    def lock(self) -> asyncio.Lock:
        """A lock of the running loop, for a get-or-create that awaits (one creation per loop)."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def put(self, value: T) -> T:
        """Make `value` the running loop's (a value it replaces is forgotten, not closed)."""
        loop = asyncio.get_running_loop()
        old = self._entries.get(loop)
        if old is not None:
            old.detached = True
            _stop_guard(old)
        entry = _Entry(value)
        self._entries[loop] = entry
        entry.guard = loop.create_task(self._until_tasks_cancelled(loop, entry), name=f"close {self.name} with its loop")
        entry.closer = self._until_loop_shutdown(loop, entry)
        # The first step, run synchronously to its `yield` (nothing before it awaits): the running
        # loop's asyncgen hook now tracks the generator, and its shutdown will close it.
        step = entry.closer.__anext__()
        try:
            step.send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - the generator yields before awaiting anything
            raise RuntimeError("loop-scoped closer did not stop at its first yield")
        return value

    async def close(self) -> None:
        """Close the running loop's value now (and forget it)."""
        loop = asyncio.get_running_loop()
        entry = self._entries.pop(loop, None)
        self._locks.pop(loop, None)
        if entry is not None and not entry.detached:
            entry.detached = True
            guard = _stop_guard(entry)
            if guard is not None and guard is not asyncio.current_task():
                await asyncio.wait([guard])  # gone before this returns: a loop closed next has no pending task
            await self._close_value(entry.value)

    def forget_all(self) -> None:
        """Drop every entry without closing it (tests, settings changes); what holds a value keeps it."""
        for entry in list(self._entries.values()):
            entry.detached = True
            _stop_guard(entry)
        self._entries.clear()
        self._locks.clear()

    async def _until_tasks_cancelled(self, loop: asyncio.AbstractEventLoop, entry: _Entry[T]) -> None:
        try:
            await loop.create_future()  # never set: only a cancellation ends the wait
        except asyncio.CancelledError:
            await self._close_at_shutdown(loop, entry)
            raise

    async def _until_loop_shutdown(self, loop: asyncio.AbstractEventLoop, entry: _Entry[T]) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self._close_at_shutdown(loop, entry)

    async def _close_at_shutdown(self, loop: asyncio.AbstractEventLoop, entry: _Entry[T]) -> None:
        if entry.detached:
            return
        entry.detached = True
        if self._entries.get(loop) is entry:
            del self._entries[loop]
        try:
            await self._close_value(entry.value)
        except Exception:  # noqa: BLE001 - the loop is shutting down: report, do not raise
            log.warning("closing the %s of a finished event loop failed", self.name, exc_info=True)


def _stop_guard(entry: _Entry) -> asyncio.Task[None] | None:
    """Cancel an entry's guard (its value was closed or let go elsewhere); the guard, once it runs,
    finds the entry detached and closes nothing."""
    guard, entry.guard = entry.guard, None
    if guard is not None and not guard.done():
        guard.cancel()
    return guard
