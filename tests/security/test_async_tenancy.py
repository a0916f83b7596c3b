"""Asynchronous invocation's routes keep tenants apart and hold keys to their scopes.

A request id is not a secret to guard a tenant's events by: another tenant's id is a 404 exactly
like an id that never existed (never a 403 that confirms it), and so are another tenant's
function's dead letters, whatever the route. Inside a namespace, reading an event's status needs
read or invoke, listing dead letters needs read, redriving or deleting them needs invoke; a key
for one function sees nothing of another.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson
import pytest

from tests.async_calls import (
    EVENT,
    FAST,
    JSON,
    accepted,
    bearer,
    error_of,
    queue_shot,
    settled,
    status_of,
)
from tests.helpers import handler_zip
from tests.stack import Stack

pytestmark = pytest.mark.integration

WORKS = handler_zip("return {'owner': event['owner']}")
FAILS = handler_zip("raise ValueError('no luck')")


@dataclass
class Tenants:
    stack: Stack
    a: str  # key of team-a: deploy, invoke, read
    b: str  # key of team-b: deploy, invoke, read
    a_done: str  # team-a's event to "works", succeeded
    a_dead: str  # team-a's event to "fails", a dead letter


async def as_key(stack: Stack, method: str, path: str, key: str, **kwargs) -> object:
    """``method path`` with ``key`` instead of the stack's admin key."""
    headers = bearer(key) | kwargs.pop("headers", {})
    return await stack.client.request(method, path, headers=headers, **kwargs)


async def deploy(stack: Stack, key: str, name: str, code: bytes, **params: str) -> None:
    resp = await as_key(
        stack, "PUT", f"/v1/functions/{name}", key, data=code, params=params,
        headers={"Content-Type": "application/zip"},
    )  # fmt: skip
    assert resp.status == 201, await resp.text()


async def send(stack: Stack, key: str, name: str, event: object, **headers: str) -> object:
    return await as_key(
        stack, "POST", f"/v1/functions/{name}/invoke", key, data=orjson.dumps(event),
        headers=JSON | EVENT | headers,
    )  # fmt: skip


@pytest.fixture
async def tenants(any_redis_stack) -> Tenants:
    """team-a and team-b each own "works" and "fails" (no retries); team-a has one event that
    succeeded and one in its dead letters."""
    stack = await any_redis_stack(**FAST)
    a, b = await stack.key("team-a"), await stack.key("team-b")
    for key in (a, b):
        await deploy(stack, key, "works", WORKS)
        await deploy(stack, key, "fails", FAILS, async_retries="0")
    done = await accepted(await send(stack, a, "works", {"owner": "a"}))
    dead = await accepted(await send(stack, a, "fails", {"owner": "a"}))
    assert (await settled(stack, done))["result"] == {"owner": "a"}
    assert (await settled(stack, dead))["status"] == "failed"
    assert await dead_letter_ids(stack, a, "fails") == [dead]
    return Tenants(stack, a, b, done, dead)


async def dead_letter_ids(stack: Stack, key: str, name: str) -> list[str]:
    resp = await as_key(stack, "GET", f"/v1/functions/{name}/dead-letters", key)
    assert resp.status == 200, await resp.text()
    return [letter["request_id"] for letter in (await resp.json())["dead_letters"]]


async def unseen(resp: object, *leaks: str) -> None:
    """A 404 that names none of ``leaks``."""
    error = await error_of(resp, 404)
    assert error["code"] == "NotFound", error
    for leak in leaks:
        assert leak not in error["message"], error


async def as_if_absent(stack: Stack, method: str, path: str, key: str, **kwargs) -> None:
    """``method path`` in team-a's namespace answers ``key`` exactly as in a namespace that
    does not exist: the same 404, the same words."""
    errors = []
    for namespace in ("team-a", "team-none"):
        resp = await as_key(stack, method, path, key, params={"namespace": namespace}, **kwargs)
        errors.append(await error_of(resp, 404))
    assert errors[0] == {
        **errors[1],
        "message": errors[1]["message"].replace("team-none", "team-a"),
    }


async def test_another_tenants_request_id_is_a_404_like_one_that_never_existed(tenants):
    stack = tenants.stack
    never = str(uuid.uuid4())
    b_admin = await stack.key("team-b", "admin")

    for b in (tenants.b, b_admin):
        absent = await error_of(await status_of(stack, never, b), 404)
        for request_id in (tenants.a_done, tenants.a_dead, never):
            resp = await status_of(stack, request_id, b)
            error = await error_of(resp, 404)
            assert error == {**absent, "message": absent["message"].replace(never, request_id)}
            # asking in team-a's namespace does not help
            await as_if_absent(stack, "GET", f"/v1/invocations/{request_id}", b)
    # the owner sees its own
    resp = await status_of(stack, tenants.a_done, tenants.a)
    assert resp.status == 200 and (await resp.json())["namespace"] == "team-a"


@pytest.mark.parametrize(
    "request_id",
    [
        "not-an-id",
        "..%2F..%2Fsystem%2Fstatus",
        "00000000-0000-0000-0000-00000000000G",
        "*",
        "x" * 5000,
    ],
    ids=["word", "path", "not-hex", "glob", "huge"],
)
async def test_a_malformed_request_id_is_a_404(hotpool_stack, request_id):
    stack = await hotpool_stack()

    await unseen(await stack.client.get(f"/v1/invocations/{request_id}"))


async def test_an_events_own_id_in_another_form_is_a_404(tenants):
    """Upper case, or an attempt's record id (id:2), is not the event's id."""
    stack, a = tenants.stack, tenants.a
    for request_id in (tenants.a_done.upper(), f"{tenants.a_done}:2", f"{tenants.a_done}%20"):
        await unseen(await status_of(stack, request_id, a))


async def test_another_tenants_dead_letters_are_404_on_every_route(tenants):
    stack, b, dead = tenants.stack, tenants.b, tenants.a_dead
    attempts = [
        ("GET", "/v1/functions/fails/dead-letters", {}),
        ("POST", "/v1/functions/fails/dead-letters/redrive", {}),
        ("POST", "/v1/functions/fails/dead-letters/redrive", {"json": {"request_ids": [dead]}}),
        ("DELETE", f"/v1/functions/fails/dead-letters/{dead}", {}),
    ]
    for method, path, extra in attempts:
        await as_if_absent(stack, method, path, b, **extra)
    # team-b's own function of that name knows nothing of team-a's letter
    assert await dead_letter_ids(stack, b, "fails") == []
    resp = await as_key(
        stack, "POST", "/v1/functions/fails/dead-letters/redrive", b,
        json={"request_ids": [dead]},
    )  # fmt: skip
    assert resp.status == 200 and await resp.json() == {"redriven": [], "not_found": [dead]}
    await unseen(await as_key(stack, "DELETE", f"/v1/functions/fails/dead-letters/{dead}", b))

    # team-a's letter is where it was, its event still failed
    assert await dead_letter_ids(stack, tenants.a, "fails") == [dead]
    assert (await (await status_of(stack, dead, tenants.a)).json())["status"] == "failed"


async def test_another_tenant_cannot_queue_into_a_namespace_or_replay_its_idempotency_key(tenants):
    stack, a, b = tenants.stack, tenants.a, tenants.b
    first = await accepted(
        await send(stack, a, "works", {"owner": "a"}, **{"Idempotency-Key": "k1"})
    )
    await settled(stack, first)
    before = await queue_shot(stack)

    await as_if_absent(
        stack, "POST", "/v1/functions/works/invoke", b, data=b"{}",
        headers=JSON | EVENT | {"Idempotency-Key": "k1"},
    )  # fmt: skip
    assert await queue_shot(stack) == before
    # the same key on team-b's own function of that name is team-b's own event
    mine = await send(stack, b, "works", {"owner": "b"}, **{"Idempotency-Key": "k1"})
    assert await accepted(mine) != first and "X-Hotpool-Idempotent-Replay" not in mine.headers
    status = await settled(stack, mine.headers["X-Hotpool-Request-Id"])
    assert status["namespace"] == "team-b" and status["result"] == {"owner": "b"}


async def test_a_read_key_reads_status_and_dead_letters_but_cannot_change_them(tenants):
    stack, dead = tenants.stack, tenants.a_dead
    reader = await stack.key("team-a", "read")

    resp = await status_of(stack, dead, reader)
    assert resp.status == 200 and (await resp.json())["status"] == "failed"
    assert await dead_letter_ids(stack, reader, "fails") == [dead]
    for method, path in [
        ("POST", "/v1/functions/fails/dead-letters/redrive"),
        ("DELETE", f"/v1/functions/fails/dead-letters/{dead}"),
        ("POST", "/v1/functions/works/invoke"),
    ]:
        error = await error_of(await as_key(stack, method, path, reader, headers=EVENT), 403)
        assert "'invoke' scope" in error["message"], error

    assert await dead_letter_ids(stack, tenants.a, "fails") == [dead]
    assert (await (await status_of(stack, dead, tenants.a)).json())["status"] == "failed"


async def test_a_key_without_read_or_invoke_cannot_see_an_events_status(tenants):
    stack = tenants.stack
    deployer = await stack.key("team-a", "deploy")

    error = await error_of(await status_of(stack, tenants.a_done, deployer), 403)
    assert "scope" in error["message"], error
    resp = await as_key(stack, "GET", "/v1/functions/fails/dead-letters", deployer)
    assert "'read' scope" in (await error_of(resp, 403))["message"]


async def test_an_invoke_key_cannot_list_dead_letters(tenants):
    stack = tenants.stack
    invoker = await stack.key("team-a", "invoke")

    resp = await status_of(stack, tenants.a_dead, invoker)
    assert resp.status == 200 and (await resp.json())["status"] == "failed"
    resp = await as_key(stack, "GET", "/v1/functions/fails/dead-letters", invoker)
    assert "'read' scope" in (await error_of(resp, 403))["message"]


async def test_a_function_key_sees_its_own_events_only(tenants):
    stack = tenants.stack
    only_works = await stack.key("team-a", "invoke", function="team-a.works")

    mine = await accepted(await send(stack, only_works, "works", {"owner": "key"}))
    resp = await status_of(stack, mine, only_works)
    assert resp.status == 200, await resp.text()
    assert (await settled(stack, mine))["result"] == {"owner": "key"}
    # the function's events from other keys are its function's: visible
    assert (await status_of(stack, tenants.a_done, only_works)).status == 200
    # another function of its namespace, and everything of another namespace: unseen
    before = await queue_shot(stack)
    await unseen(await send(stack, only_works, "fails", {"owner": "key"}), "team-a")
    assert await queue_shot(stack) == before
    await unseen(await status_of(stack, tenants.a_dead, only_works))
    for method, path in [
        ("GET", "/v1/functions/fails/dead-letters"),
        ("POST", "/v1/functions/fails/dead-letters/redrive"),
        ("DELETE", f"/v1/functions/fails/dead-letters/{tenants.a_dead}"),
    ]:
        await unseen(await as_key(stack, method, path, only_works))
    # its own function's dead letters need the read scope it does not have
    resp = await as_key(stack, "GET", "/v1/functions/works/dead-letters", only_works)
    await error_of(resp, 403)
    assert await dead_letter_ids(stack, tenants.a, "fails") == [tenants.a_dead]
