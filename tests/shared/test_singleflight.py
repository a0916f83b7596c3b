"""SingleFlight: concurrent misses of one key share one load."""

from __future__ import annotations

import asyncio

import pytest

from hotpool.shared.singleflight import SingleFlight

pytestmark = pytest.mark.unit


class Loader:
    def __init__(self, outcome: object = "value", delay_s: float = 0.05) -> None:
        self.calls = 0
        self._outcome = outcome
        self._delay_s = delay_s

    async def __call__(self) -> object:
        self.calls += 1
        await asyncio.sleep(self._delay_s)
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome


async def test_concurrent_callers_of_one_key_share_one_load():
    flight: SingleFlight[object] = SingleFlight()
    load = Loader()

    results = await asyncio.gather(*(flight.run("k", load) for _ in range(50)))

    assert results == ["value"] * 50
    assert load.calls == 1


async def test_other_keys_and_later_callers_load_again():
    flight: SingleFlight[object] = SingleFlight()
    a, b = Loader("a"), Loader("b")

    assert await asyncio.gather(flight.run("a", a), flight.run("b", b)) == ["a", "b"]
    assert await flight.run("a", a) == "a"  # the first flight is over: a new load
    assert (a.calls, b.calls) == (2, 1)


async def test_every_waiter_gets_the_loads_exception_and_the_next_call_retries():
    flight: SingleFlight[object] = SingleFlight()
    failing = Loader(LookupError("down"))

    results = await asyncio.gather(
        *(flight.run("k", failing) for _ in range(5)), return_exceptions=True
    )

    assert [type(r) for r in results] == [LookupError] * 5
    assert failing.calls == 1
    assert await flight.run("k", Loader("back")) == "back"


async def test_a_cancelled_waiter_does_not_cancel_the_others():
    flight: SingleFlight[object] = SingleFlight()
    load = Loader(delay_s=0.1)
    first = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0.02)

    waiter.cancel()

    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await first == "value"
    assert load.calls == 1
