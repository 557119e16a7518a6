"""A circuit breaker per LLM endpoint: closed -> open after N consecutive failures ->
half-open after a cool-down, where exactly ONE probe call is let through.

Why our own and not a library (compared 2026-11):
- purgatory 3.0.1 (asyncio, maintained): its half-open state lets every concurrent request
  through, not one probe, and it counts failures through exception types raised inside its
  context manager, which does not fit "a 429 is not an endpoint failure" without wrappers.
- aiobreaker 1.2.0: asyncio, but last released 2021 (unmaintained).
- pybreaker 1.4: synchronous at heart (async only through Tornado's gen).
The pattern we need is ~80 lines with an injectable clock, so it is fully tested here.

One breaker per endpoint per process: the Agent Server runs graphs on several event loops in
threads, so the methods take a small lock (none of them awaits).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOpen(RuntimeError):
    """The endpoint's breaker refuses calls right now (open, or its one probe is in flight)."""

    def __init__(self, name: str, retry_in_s: float):
        super().__init__(f"circuit breaker for {name} is open (next probe in {retry_in_s:.1f} s)")
        self.name, self.retry_in_s = name, retry_in_s


@dataclass
class CircuitBreaker:
    name: str
    failure_threshold: int = 3
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _state: BreakerState = field(default=BreakerState.CLOSED, init=False)
    _failures: int = field(default=0, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _probe_in_flight: bool = field(default=False, init=False)
    opened_count: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def state(self) -> BreakerState:
        # Reported state: an open breaker whose cool-down is over reads as half-open
        # (the next call will be the probe).
        if self._state is BreakerState.OPEN and self.clock() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return self._state

    def acquire(self) -> None:
        """Ask to make one call. Raises BreakerOpen if the call must not go to this endpoint.

        The caller MUST then report exactly one of success() / failure() / release().
        """
        with self._lock:
            self._acquire()

    def _acquire(self) -> None:
        if self._state is BreakerState.CLOSED:
            return
        now = self.clock()
        if self._state is BreakerState.OPEN:
            remaining = self.cooldown_s - (now - self._opened_at)
            if remaining > 0:
                raise BreakerOpen(self.name, remaining)
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        # HALF_OPEN: one probe at a time; everyone else goes elsewhere.
        if self._probe_in_flight:
            raise BreakerOpen(self.name, 0.0)
        self._probe_in_flight = True

    def success(self) -> None:
        with self._lock:
            self._success()

    def _success(self) -> None:
        self._failures = 0
        self._probe_in_flight = False
        self._state = BreakerState.CLOSED

    def failure(self) -> None:
        with self._lock:
            self._failure()

    def _failure(self) -> None:
        self._probe_in_flight = False
        if self._state is BreakerState.HALF_OPEN:
            self._trip()
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._trip()

    def release(self) -> None:
        """The call ended in a way that says nothing about the endpoint's health (e.g. a 429,
        a 400, a cancelled task): free the probe slot, change nothing else."""
        with self._lock:
            self._probe_in_flight = False

    def _trip(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self.clock()
        self._failures = 0
        self.opened_count += 1

    def snapshot(self) -> dict:
        state = self.state
        info: dict = {"state": str(state), "consecutive_failures": self._failures, "times_opened": self.opened_count}
        if state is BreakerState.OPEN:
            info["probe_in_s"] = round(max(0.0, self.cooldown_s - (self.clock() - self._opened_at)), 3)
        return info
