"""One breaker per endpoint per process, whichever event loop (the Agent Server runs graphs on several)."""
import asyncio
import threading

from tools.llm import get_gateway, reset_gateway


def test_gateways_of_different_event_loops_share_breakers():
    reset_gateway()
    seen = {}

    def in_other_loop():
        async def grab():
            gw = get_gateway()
            seen["other"] = (gw, gw._breaker("llamacpp@http://127.0.0.1:1/v1"))

        asyncio.run(grab())

    async def here():
        gw = get_gateway()
        return gw, gw._breaker("llamacpp@http://127.0.0.1:1/v1")

    t = threading.Thread(target=in_other_loop)
    t.start()
    t.join()
    mine = asyncio.run(here())
    assert mine[0] is not seen["other"][0]  # SDK clients are per loop...
    assert mine[1] is seen["other"][1]      # ...the endpoint's breaker is not
    for _ in range(3):
        mine[1].failure()
    assert seen["other"][0].breaker_states()["llamacpp@http://127.0.0.1:1/v1"]["state"] == "open"
    reset_gateway()
