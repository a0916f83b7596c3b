"""An accepted event runs in a Docker container (the production backend) as in a local process:
the runtime image's bootstrap tells the handler its attempt, and the record says so."""

from __future__ import annotations

import pytest

from tests.async_calls import FAST, accepted, send, settled
from tests.helpers import handler_zip
from tests.stack import wait_for

pytestmark = pytest.mark.integration

TELLS = handler_zip(
    "return {'event': event, 'attempt': context.attempt, 'id': context.aws_request_id}"
)


@pytest.fixture
def stack_backend() -> str:
    return "docker"


async def test_an_accepted_event_runs_in_a_container_with_its_attempt(hotpool_stack):
    stack = await hotpool_stack(**FAST)
    assert (await stack.deploy("tells", TELLS)).status == 201

    request_id = await accepted(await send(stack, "tells", {"n": 1}))

    status = await settled(stack, request_id, timeout_s=60)
    assert status["status"] == "succeeded", status
    assert status["result"] == {"event": {"n": 1}, "attempt": 1, "id": request_id}

    async def recorded() -> list[dict]:
        resp = await stack.client.get("/v1/functions/tells/invocations")
        assert resp.status == 200
        return [r for r in (await resp.json())["invocations"] if r["request_id"] == request_id]

    assert await wait_for(recorded)
    (record,) = await recorded()
    assert record["trigger"] == "async" and record["attempt"] == 1, record
