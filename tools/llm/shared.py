"""The process's gateways, one per event loop (the SDK clients are bound to a loop), wired with the
process's observers (a Langfuse generation per call when tracing is on) and sharing one set of
circuit breakers, so an endpoint's health is one fact whichever loop a run happens to use.

This wiring lives here, not in tools/llm/gateway.py, so the gateway does not import tools/tracing.py
(which observes the gateway's events): the two modules no longer import each other. A gateway is
kept per loop object (held weakly) and closed when asyncio.run shuts its loop down."""
from __future__ import annotations

import asyncio

from config import get_settings
from storage.loop_scoped import LoopScoped
from tools.breaker import CircuitBreaker
from tools.llm.gateway import LLMGateway, Observer


async def _close(gw: LLMGateway) -> None:
    await gw.aclose()


_GATEWAYS: LoopScoped[LLMGateway] = LoopScoped("LLM gateway", _close)
_NO_LOOP: list[LLMGateway] = []  # the gateway asked for outside any event loop (sync code: health, estimates)
_SHARED_BREAKERS: dict[str, CircuitBreaker] = {}


def _new_gateway() -> LLMGateway:
    return LLMGateway(get_settings(), observers=_default_observers(), breakers=_SHARED_BREAKERS)


def get_gateway() -> LLMGateway:
    """The gateway for the running event loop, built from get_settings(); breakers live as long as
    the process's settings (reset_gateway forgets them)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if not _NO_LOOP:
            _NO_LOOP.append(_new_gateway())
        return _NO_LOOP[0]
    gw = _GATEWAYS.get()
    if gw is None:
        gw = _new_gateway()
        _GATEWAYS.put(gw)
    return gw


def _default_observers() -> list[Observer]:
    from tools.tracing import llm_call_observer  # a Langfuse generation per call; None when tracing is off

    tracing = llm_call_observer()
    return [tracing] if tracing is not None else []


def reset_gateway() -> None:
    """Forget the process-wide gateways and breakers (tests, settings changes). A forgotten gateway's
    clients are left to whoever still holds it (and to the GC), as before."""
    _GATEWAYS.forget_all()
    _NO_LOOP.clear()
    _SHARED_BREAKERS.clear()
