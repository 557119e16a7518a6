"""storage/loop_scoped.py: one value per event loop object, closed when asyncio.run shuts its loop down."""
from __future__ import annotations

import asyncio

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
