"""storage/loop_scoped.py: one value per event loop object, closed when asyncio.run shuts its loop down."""
from __future__ import annotations

import asyncio
import threading

from storage.loop_scoped import LoopScoped


class Resource:
    def __init__(self, n: int):
        self.n, self.closed = n, 0


def _scoped(log: list) -> LoopScoped[Resource]:
    async def close(r: Resource) -> None:
        await asyncio.sleep(0)  # the close really runs on the loop
        r.closed += 1
        log.append(r.n)
    return LoopScoped("resource", close)


def test_each_loop_gets_its_own_value_and_closes_it_at_shutdown():
    closed: list[int] = []
    scoped = _scoped(closed)
    made: list[Resource] = []

    async def use(n: int) -> Resource:
        assert scoped.get() is None  # a new loop never sees the last loop's value
        r = scoped.put(Resource(n))
        assert scoped.get() is r
        made.append(r)
        return r

    first = asyncio.run(use(1))
    assert first.closed == 1 and closed == [1]
    second = asyncio.run(use(2))
    assert second is not first and second.closed == 1 and closed == [1, 2]


def test_an_early_close_is_not_repeated_at_shutdown_and_forget_all_closes_nothing():
    closed: list[int] = []
    scoped = _scoped(closed)

    async def early() -> None:
        scoped.put(Resource(1))
        await scoped.close()
        assert scoped.get() is None

    asyncio.run(early())
    assert closed == [1]

    async def forgotten() -> Resource:
        r = scoped.put(Resource(2))
        scoped.forget_all()
        assert scoped.get() is None
        return r

    r = asyncio.run(forgotten())
    assert r.closed == 0 and closed == [1]


def test_a_replaced_value_is_left_open_and_the_new_one_closed():
    closed: list[int] = []
    scoped = _scoped(closed)

    async def replace() -> None:
        scoped.put(Resource(1))
        scoped.put(Resource(2))
        assert scoped.get().n == 2

    asyncio.run(replace())
    assert closed == [2]


class StubbornWorkers(Resource):
    """A resource whose background worker, like psycopg_pool's maintenance workers, catches a
    cancellation around its task and goes back to its queue: only close() (a stop message) ends it."""

    def __init__(self, n: int):
        super().__init__(n)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.busy = asyncio.Event()
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        while (job := await self.queue.get()) is not None:
            try:
                await job()
            except (Exception, asyncio.CancelledError):
                pass

    def start_slow_job(self) -> None:
        async def slow():
            self.busy.set()
            await asyncio.sleep(3600)
        self.queue.put_nowait(slow)

    async def stop(self) -> None:
        self.queue.put_nowait(None)
        await asyncio.wait_for(self.worker, 5)


def test_a_value_is_closed_while_asyncio_run_cancels_the_tasks_left():
    """The close runs alongside the cancellation of the loop's tasks (not after it, which waited
    forever for a worker that had swallowed its cancellation mid-task)."""
    closed: list[int] = []

    async def close(r: StubbornWorkers) -> None:
        await r.stop()
        r.closed += 1
        closed.append(r.n)

    scoped = LoopScoped("resource", close)

    async def main() -> StubbornWorkers:
        r = scoped.put(StubbornWorkers(1))
        r.start_slow_job()
        await r.busy.wait()  # the worker is mid-job when main returns
        return r

    done: list[StubbornWorkers] = []
    runner = threading.Thread(target=lambda: done.append(asyncio.run(main())), daemon=True)
    runner.start()
    runner.join(20)
    assert not runner.is_alive(), "asyncio.run did not return: the loop's shutdown waited on the worker"
    assert done[0].closed == 1 and closed == [1] and done[0].worker.done()
