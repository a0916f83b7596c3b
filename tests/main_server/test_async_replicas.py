"""Two Main replicas on one real Redis (and one metadata store) are one asynchronous API: an
event accepted by one is seen, replayed and counted against its namespace's limit by the other."""

from __future__ import annotations

import pytest

from tests.async_calls import (
    FAST,
    GATED,
    accepted,
    bearer,
    error_of,
    keyed,
    send,
    settled,
    status_of,
)

pytestmark = pytest.mark.integration


async def test_any_replica_answers_for_an_event_another_accepted(
    real_redis_url, hotpool_stack, tmp_path
):
    shared = {"redis_url": real_redis_url, "state_dir": tmp_path / "shared"}
    settings = {**FAST, **shared, "async_max_queued_per_namespace": 2}
    one, two = await hotpool_stack(**settings), await hotpool_stack(**settings)
    env = {"GATE": str(tmp_path / "gate")}
    assert (await one.deploy("gated", GATED, env=env)).status == 201, "deploy"
    key = await one.key("default")  # in the store both replicas read
    as_key = {"headers": {"X-Hotpool-Invocation-Type": "Event"} | bearer(key)}

    first = await accepted(await send(one, "gated", {"n": 1}, **keyed("k1", **bearer(key))))
    # the other replica knows it, replays its idempotency key, and counts it in the limit
    assert (await (await status_of(two, first, key)).json())["request_id"] == first
    replay = await send(two, "gated", {"n": 1}, **keyed("k1", **bearer(key)))
    assert await accepted(replay) == first and replay.headers["X-Hotpool-Idempotent-Replay"]
    second = await accepted(await send(two, "gated", {"n": 2}, **as_key))
    for stack in (one, two):
        await error_of(await send(stack, "gated", {"n": 3}, **as_key), 429)

    (tmp_path / "gate").touch()
    for request_id in (first, second):
        for stack in (two, one):
            assert (await settled(stack, request_id))["result"] == "through"
