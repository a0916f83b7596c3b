"""Schedules are a tenant's own: another tenant's function or schedule answers exactly as an
unknown one does on every route; scopes hold; hostile expressions, time zones, events and
names are 4xx that change nothing; one tenant filling its schedule cap leaves another's room."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from hotpool.main_server.state import SCHEDULES
from tests.helpers import handler_zip
from tests.stack import Stack

pytestmark = pytest.mark.integration

CODE = handler_zip("return event")
NIGHTLY = "/v1/functions/report/schedules/nightly"
LIST = "/v1/functions/report/schedules"
ROUTES = [("PUT", NIGHTLY), ("GET", NIGHTLY), ("DELETE", NIGHTLY), ("GET", LIST)]
GOOD = {"expression": "cron(0 2 * * ? *)"}


async def call(
    stack: Stack, method: str, path: str, key: str, body: Any = None, *, raw: bytes | None = None,
    **params: str,
) -> aiohttp.ClientResponse:  # fmt: skip
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    data = raw if raw is not None else (None if body is None else aiohttp.JsonPayload(body))
    return await stack.client.request(method, path, headers=headers, params=params, data=data)


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, bytes]:
    return resp.status, await resp.read()


async def stored(stack: Stack) -> list[tuple[str, str, str]]:
    """Every enabled schedule, as (function, name, expression)."""
    return [(s.function, s.name, s.expression) for s in await stack.client.app[SCHEDULES].enabled()]


@pytest.fixture
async def tenants(hotpool_stack) -> tuple[Stack, str, str]:
    """team-a has function report with schedule nightly; team-b has nothing."""
    stack = await hotpool_stack(schedule_max_per_namespace=3)
    a, b = await stack.key("team-a"), await stack.key("team-b")
    deployed = await stack.client.put(
        "/v1/functions/report", data=CODE, params={"namespace": "team-a"},
        headers={"Authorization": f"Bearer {a}", "Content-Type": "application/zip"},
    )  # fmt: skip
    assert deployed.status == 201, await deployed.text()
    created = await call(stack, "PUT", NIGHTLY, a, GOOD)
    assert created.status == 201, await created.text()
    return stack, a, b


async def test_another_tenants_schedule_answers_byte_for_byte_as_an_unknown_one(tenants):
    stack, a, b = tenants

    async def from_b() -> list[tuple[int, bytes]]:
        found = []
        for method, path in ROUTES:
            body = GOOD if method == "PUT" else None
            for params in ({"namespace": "team-a"}, {}):
                found.append(await answer(await call(stack, method, path, b, body, **params)))
        return found

    while_it_exists = await from_b()
    assert await stored(stack) == [("team-a.report", "nightly", GOOD["expression"])]
    # the same requests once there is nothing to find
    assert (await call(stack, "DELETE", "/v1/functions/report", a)).status == 200
    once_gone = await from_b()

    assert while_it_exists == once_gone
    assert {status for status, _ in while_it_exists} == {404}
    assert await stored(stack) == []


async def test_a_tenant_sees_only_its_own_namespace(tenants):
    stack, a, b = tenants
    assert (await call(stack, "PUT", NIGHTLY, b, GOOD)).status == 404  # no report in team-b
    assert (await call(stack, "GET", LIST, b)).status == 404

    listed = await call(stack, "GET", LIST, a)

    assert listed.status == 200
    assert [(s["namespace"], s["name"]) for s in (await listed.json())["schedules"]] == [
        ("team-a", "nightly")
    ]


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        ("read", {("GET", NIGHTLY), ("GET", LIST)}),
        ("invoke", set()),
        ("deploy", {("PUT", NIGHTLY), ("DELETE", NIGHTLY)}),
    ],
)
async def test_writes_need_deploy_and_reads_need_read(tenants, scopes, allowed):
    stack, _, _ = tenants
    key = await stack.key("team-a", scopes=scopes)

    for method, path in [("GET", NIGHTLY), ("GET", LIST), ("PUT", NIGHTLY), ("DELETE", NIGHTLY)]:
        body = GOOD if method == "PUT" else None
        resp = await call(stack, method, path, key, body)

        expected = 403 if (method, path) not in allowed else (204 if method == "DELETE" else 200)
        assert resp.status == expected, (scopes, method, await resp.text())
        if resp.status == 403:
            assert (
                f"lacks the '{'read' if method == 'GET' else 'deploy'}' scope" in await resp.text()
            )


async def test_a_key_for_one_function_cannot_touch_its_schedules(tenants):
    stack, _, _ = tenants
    key = await stack.key("team-a", scopes="invoke", function="team-a.report")

    for method, path in ROUTES:
        resp = await call(stack, method, path, key, GOOD if method == "PUT" else None)
        assert resp.status == 403, await resp.text()
    assert await stored(stack) == [("team-a.report", "nightly", GOOD["expression"])]


HOSTILE = [
    # huge, nested and absurd expressions
    ({"expression": "rate(5 minutes)" + " " * 300}, 400, "at most 256"),
    ({"expression": "cron(" * 20 + ")" * 20}, 400, "has 1 fields; it needs 6"),
    ({"expression": "rate(" * 30 + "5 minutes" + ")" * 30}, 400, "is not a rate expression"),
    ({"expression": "cron(0 0 1 1 ? 99999)"}, 400, "the year field '99999'"),
    ({"expression": "cron(0 0 1 1 ? 1969)"}, 400, "the year field '1969'"),
    ({"expression": "cron(0 0 29 2 ? 2097)"}, 400, "never fires"),
    ({"expression": "* * * * * *"}, 400, "For seconds use rate(N seconds)"),
    ({"expression": "* * * * * * *"}, 400, "is not a schedule expression"),
    ({"expression": "rate(0 seconds)"}, 400, "the rate must be a whole number >= 1"),
    ({"expression": "R R R R R"}, 400, "random or hashed values"),
    ({"expression": "at(1999-01-01T00:00:00)"}, 400, "names no time after"),
    ({"expression": ["rate(5 minutes)"]}, 400, "expression is required"),
    ({"expression": "rate(5 minutes)\n"}, 201, ""),  # the newline is trimmed: accepted
    # time zones that are not IANA names, and ones that would be paths
    ({**GOOD, "timezone": "../../etc/passwd"}, 400, "not an IANA time zone name"),
    ({**GOOD, "timezone": "/etc/localtime"}, 400, "not an IANA time zone name"),
    ({**GOOD, "timezone": "Europe/../../../etc/shadow"}, 400, "not an IANA time zone name"),
    ({**GOOD, "timezone": "x" * 10_000}, 400, "not an IANA time zone name"),
    ({**GOOD, "timezone": {"name": "UTC"}}, 400, "not an IANA time zone name"),
    # events too large or too deep
    ({**GOOD, "event": "x" * 300_000}, 413, ""),
    # over EventBridge's 256 KiB as JSON, within the body's slack
    ({**GOOD, "event": {"a": "x" * 263_000}}, 413, "the event is 263008 bytes as JSON"),
    ({**GOOD, "event": [[[[[[[[[[0]]]]]]]]]]}, 201, ""),
    ({**GOOD, "enabled": "false"}, 400, "enabled must be true or false"),
    ({**GOOD, "extra": 1}, 400, "unknown field(s) extra"),
]


@pytest.mark.parametrize(("body", "status", "says"), HOSTILE)
async def test_hostile_bodies_are_refused_and_change_nothing(tenants, body, status, says):
    stack, a, _ = tenants

    resp = await call(stack, "PUT", "/v1/functions/report/schedules/probe", a, body)

    assert resp.status == status, await resp.text()
    text = await resp.text()
    assert says in text and len(text) < 2000 and "Traceback" not in text
    expected = [("team-a.report", "nightly", GOOD["expression"])]
    if status == 201:
        expected.append(("team-a.report", "probe", body["expression"].strip()))
    assert sorted(await stored(stack)) == sorted(expected)


async def test_an_event_nested_past_the_limit_is_refused(hotpool_stack):
    stack = await hotpool_stack(max_event_depth=16)
    key = await stack.key("team-a")
    await stack.client.put(
        "/v1/functions/report", data=CODE, params={"namespace": "team-a"},
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/zip"},
    )  # fmt: skip
    deep: Any = 0
    for _ in range(17):
        deep = [deep]

    resp = await call(stack, "PUT", NIGHTLY, key, {**GOOD, "event": deep})

    assert resp.status == 400
    assert "the event nests deeper than 16 levels" in await resp.text()
    assert await stored(stack) == []


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b'{"expression": ', b"[" * 5000 + b"]" * 5000, b"\xff\xfe"]
)
async def test_a_body_that_is_not_a_json_object_is_a_400(tenants, raw):
    stack, a, _ = tenants

    resp = await call(stack, "PUT", "/v1/functions/report/schedules/probe", a, raw=raw)

    assert resp.status == 400, await resp.text()
    assert len(await stored(stack)) == 1


@pytest.mark.parametrize(
    "name", ["Nightly", "a" * 64, "1st", "night%20ly", "night.ly", "%2E%2E", "-x", "é"]
)
async def test_schedule_names_are_validated_like_function_names(tenants, name):
    stack, a, _ = tenants

    for method in ("PUT", "GET", "DELETE"):
        resp = await call(stack, method, f"/v1/functions/report/schedules/{name}", a, GOOD)
        assert resp.status in (400, 404), (method, name, await resp.text())
    assert len(await stored(stack)) == 1


async def test_one_tenant_filling_its_cap_leaves_another_tenants_room(tenants):
    stack, a, b = tenants
    for name in ("two", "three"):
        assert (await call(stack, "PUT", f"{LIST}/{name}", a, GOOD)).status == 201

    refused = await call(stack, "PUT", f"{LIST}/four", a, GOOD)

    assert refused.status == 429
    assert "HOTPOOL_SCHEDULE_MAX_PER_NAMESPACE" in await refused.text()
    deployed = await stack.client.put(
        "/v1/functions/report", data=CODE,
        headers={"Authorization": f"Bearer {b}", "Content-Type": "application/zip"},
    )  # fmt: skip
    assert deployed.status == 201
    assert (await call(stack, "PUT", NIGHTLY, b, GOOD)).status == 201
    assert len(await stored(stack)) == 4
