"""The schedule endpoints on the embedded stack: create, replace, read, list and delete a
function's schedules; the 4xx of bad input; schedules leave with their function."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from hotpool.main_server.state import SCHEDULES
from tests.helpers import handler_zip
from tests.stack import Stack

pytestmark = pytest.mark.integration

CODE = handler_zip("return event")
BASE = "/v1/functions/report/schedules"


async def put(stack: Stack, path: str, body: Any, **params: str) -> tuple[int, Any]:
    resp = await stack.client.put(path, json=body, params=params)
    return resp.status, await resp.json()


async def get(stack: Stack, path: str, **params: str) -> tuple[int, Any]:
    resp = await stack.client.get(path, params=params)
    return resp.status, await resp.json()


def moments(times: list[str]) -> list[datetime]:
    return [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times]


@pytest.fixture
async def stack(hotpool_stack) -> Stack:
    stack = await hotpool_stack()
    assert (await stack.deploy("report", CODE)).status == 201
    return stack


async def test_create_read_replace_list_and_delete_a_schedule(stack):
    status, created = await put(
        stack, f"{BASE}/nightly",
        {"expression": "cron(0 12 * * ? *)", "timezone": "Europe/Berlin", "event": {"job": 1}},
    )  # fmt: skip

    assert status == 201, created
    assert created | {"created_at": None, "updated_at": None, "next_fires": None} == {
        "name": "nightly", "function": "report", "namespace": "default",
        "expression": "cron(0 12 * * ? *)", "timezone": "Europe/Berlin", "event": {"job": 1},
        "enabled": True, "created_at": None, "updated_at": None, "next_fires": None,
        "last_fired": None, "fires": 0, "missed": 0,  # the scheduler's progress: none yet
    }  # fmt: skip
    fires = moments(created["next_fires"])
    assert len(fires) == 3 and fires == sorted(fires)
    # noon in Berlin is 11:00 or 10:00 UTC, a day apart (but for a daylight saving change)
    assert all(f.hour in (10, 11) and f.minute == 0 for f in fires)
    assert all(
        b - a in {timedelta(hours=h) for h in (23, 24, 25)} for a, b in itertools.pairwise(fires)
    )

    status, read = await get(stack, f"{BASE}/nightly")
    assert status == 200 and read == created

    status, replaced = await put(stack, f"{BASE}/nightly", {"expression": "rate(1 hour)"})
    assert status == 200, replaced
    assert replaced["created_at"] == created["created_at"]
    # a PUT replaces the whole schedule: what it leaves out takes its default
    assert (replaced["timezone"], replaced["event"]) == ("UTC", None)
    status, _ = await put(stack, f"{BASE}/early", {"expression": "0 6 * * *"})
    assert status == 201

    status, listed = await get(stack, BASE)
    assert status == 200
    assert [(s["name"], s["expression"]) for s in listed["schedules"]] == [
        ("early", "0 6 * * *"), ("nightly", "rate(1 hour)"),
    ]  # fmt: skip

    resp = await stack.client.delete(f"{BASE}/nightly")
    assert resp.status == 204 and await resp.read() == b""
    status, gone = await get(stack, f"{BASE}/nightly")
    assert status == 404
    assert gone["error"]["message"] == "schedule 'nightly' of function 'report' does not exist"
    assert (await stack.client.delete(f"{BASE}/nightly")).status == 404
    assert [s["name"] for s in (await get(stack, BASE))[1]["schedules"]] == ["early"]


async def test_a_rate_fires_from_its_creation_and_a_disabled_schedule_lists_no_fires(stack):
    status, created = await put(stack, f"{BASE}/often", {"expression": "rate(5 minutes)"})

    assert status == 201
    start = moments([created["created_at"]])[0].replace(microsecond=0)
    first = moments(created["next_fires"])[0]
    # on the grid that starts at the creation (its whole second)
    assert first > start and (first - start) % timedelta(minutes=5) == timedelta(0)
    status, off = await put(
        stack, f"{BASE}/often", {"expression": "rate(5 minutes)", "enabled": False}
    )
    assert (status, off["enabled"], off["next_fires"]) == (200, False, [])


async def test_schedules_live_in_their_functions_namespace(stack):
    assert (await stack.deploy("report", CODE, namespace="acme")).status == 201
    status, created = await put(stack, f"{BASE}/a", {"expression": "rate(1 day)"}, namespace="acme")
    assert (status, created["namespace"]) == (201, "acme")

    assert (await get(stack, BASE))[1] == {"schedules": []}
    assert (await get(stack, f"{BASE}/a"))[0] == 404
    assert [s["name"] for s in (await get(stack, BASE, namespace="acme"))[1]["schedules"]] == ["a"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/v1/functions/nope/schedules/a"), ("GET", "/v1/functions/nope/schedules")],
)
async def test_the_function_must_exist(stack, method, path):
    resp = await stack.client.request(method, path, json={"expression": "rate(1 hour)"})

    assert resp.status == 404
    assert (await resp.json())["error"]["message"] == "function 'nope' does not exist"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"expression": "cron(0 12 * * * *)"}, 400,
         "exactly one of day-of-month and day-of-week must be '?'"),
        ({"expression": "rate(1 fortnight)"}, 400, "unit seconds, minutes, hours or days"),
        ({"expression": "rate(5 minutes)", "timezone": "Moon/Base"}, 400,
         "not an IANA time zone name"),
        ({"expression": "rate(5 minutes)", "retries": 3}, 400, "unknown field(s) retries"),
        ({}, 400, "expression is required"),
        (["rate(5 minutes)"], 400, "the body must be a JSON object"),
        ({"expression": "rate(1 hour)", "event": "x" * 300_000}, 413, "the schedule is"),
    ],
)  # fmt: skip
async def test_bad_input_is_a_4xx_that_says_what_is_wrong(stack, body, status, says):
    got, answer = await put(stack, f"{BASE}/bad", body)

    assert got == status, answer
    assert says in answer["error"]["message"]
    assert (await get(stack, BASE))[1] == {"schedules": []}


async def test_a_body_that_is_not_json_is_a_400(stack):
    resp = await stack.client.put(f"{BASE}/bad", data=b"rate(5 minutes)")

    assert resp.status == 400
    assert (await resp.json())["error"]["message"].startswith("the body is not valid JSON")


async def test_deleting_the_function_deletes_its_schedules(stack):
    await put(stack, f"{BASE}/a", {"expression": "rate(1 hour)"})
    await put(stack, f"{BASE}/b", {"expression": "rate(1 day)"})

    assert (await stack.client.delete("/v1/functions/report")).status == 200

    assert await stack.client.app[SCHEDULES].enabled() == []
    assert (await stack.deploy("report", CODE)).status in (200, 201)
    assert (await get(stack, BASE))[1] == {"schedules": []}


async def test_the_per_namespace_cap_names_its_setting(hotpool_stack):
    stack = await hotpool_stack(schedule_max_per_namespace=2)
    assert (await stack.deploy("report", CODE)).status == 201
    for name in ("a", "b"):
        assert (await put(stack, f"{BASE}/{name}", {"expression": "rate(1 hour)"}))[0] == 201

    status, refused = await put(stack, f"{BASE}/c", {"expression": "rate(1 hour)"})

    assert status == 429
    assert "HOTPOOL_SCHEDULE_MAX_PER_NAMESPACE" in refused["error"]["message"]
    # replacing one is not one more
    assert (await put(stack, f"{BASE}/a", {"expression": "rate(2 hours)"}))[0] == 200


async def test_the_minimum_interval_is_the_settings(hotpool_stack):
    stack = await hotpool_stack(schedule_min_interval_s=60)
    assert (await stack.deploy("report", CODE)).status == 201

    status, refused = await put(stack, f"{BASE}/fast", {"expression": "rate(30 seconds)"})

    assert status == 400
    assert "the shortest interval allowed is 60 s" in refused["error"]["message"]
    assert (await put(stack, f"{BASE}/ok", {"expression": "rate(1 minute)"}))[0] == 201
