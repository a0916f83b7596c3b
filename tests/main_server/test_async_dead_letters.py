"""Where asynchronous events that do not succeed go: dead letters (list, redrive, delete),
expiry past the maximum event age, and the on_success / on_failure destinations that receive
Lambda's destination record."""

from __future__ import annotations

import time

import orjson
import pytest

from hotpool.shared import async_keys
from tests.main_server.async_events import (
    FAST,
    ledger,
    ledger_zip,
    records,
    send,
    status,
    wait_status,
)
from tests.stack import wait_for

pytestmark = pytest.mark.integration

FAILING = ledger_zip("raise RuntimeError(f'cannot handle {event}')")
FIXED = ledger_zip("return {'handled': event}")


async def dead_letters(stack, name: str) -> list[dict]:
    resp = await stack.client.get(f"/v1/functions/{name}/dead-letters")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["dead_letters"]


async def redrive(stack, name: str, ids: list[str] | None = None) -> dict:
    body = orjson.dumps({"request_ids": ids}) if ids is not None else None
    resp = await stack.client.post(f"/v1/functions/{name}/dead-letters/redrive", data=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_failed_event_becomes_a_dead_letter_with_every_error(hotpool_stack, tmp_path):
    stack = await hotpool_stack(**FAST)
    path = tmp_path / "ledger"
    await stack.deploy("orders", FAILING, async_retries=1, env={"LEDGER": str(path)})

    request_id = await send(stack.client, "orders", {"order": 1})
    done = await wait_status(stack.client, request_id)

    assert done["status"] == "failed" and done["reason"] == "RetriesExhausted"
    (letter,) = await dead_letters(stack, "orders")
    assert letter["request_id"] == request_id
    assert letter["reason"] == "RetriesExhausted" and letter["status"] == "failed"
    assert letter["function"] == "orders" and letter["attempts"] == 2
    assert letter["event"] == {"order": 1}
    assert [e["attempt"] for e in letter["errors"]] == [1, 2]
    assert all(e["type"] == "RuntimeError" for e in letter["errors"])
    assert "cannot handle" in letter["errors"][0]["message"]
    assert len(ledger(path)) == 2


async def test_redrive_reruns_dead_letters_and_delete_removes_one(hotpool_stack, tmp_path):
    stack = await hotpool_stack(**FAST)
    path = tmp_path / "ledger"
    await stack.deploy("orders", FAILING, async_retries=0, env={"LEDGER": str(path)})
    first, second, third = [await send(stack.client, "orders", {"order": n}) for n in (1, 2, 3)]
    for request_id in (first, second, third):
        assert (await wait_status(stack.client, request_id))["status"] == "failed"
    assert {d["request_id"] for d in await dead_letters(stack, "orders")} == {first, second, third}
    # fixed, the function handles what it failed on
    fixed = await stack.deploy("orders", FIXED, async_retries=0, env={"LEDGER": str(path)})
    assert fixed.status == 200

    missing = "00000000-0000-4000-8000-000000000000"
    assert await redrive(stack, "orders", [first, missing]) == {
        "redriven": [first], "not_found": [missing]
    }  # fmt: skip
    done = await wait_status(stack.client, first)
    assert done["status"] == "succeeded" and done["result"] == {"handled": {"order": 1}}
    assert "reason" not in done
    assert {d["request_id"] for d in await dead_letters(stack, "orders")} == {second, third}

    resp = await stack.client.delete(f"/v1/functions/orders/dead-letters/{second}")
    assert resp.status == 200 and (await resp.json()) == {"deleted": second}
    again = await stack.client.delete(f"/v1/functions/orders/dead-letters/{second}")
    assert again.status == 404

    assert await redrive(stack, "orders") == {"redriven": [third], "not_found": []}
    assert (await wait_status(stack.client, third))["status"] == "succeeded"
    assert await dead_letters(stack, "orders") == []
    assert (await status(stack.client, second))["status"] == "failed"  # deleted, not rerun
    runs = [(r["id"], r["event"]) for r in ledger(path)]
    assert runs.count((first, {"order": 1})) == 2 and runs.count((third, {"order": 3})) == 2
    assert runs.count((second, {"order": 2})) == 1


async def test_a_dead_letter_outlives_the_status_of_its_event(hotpool_stack, tmp_path):
    # statuses are kept a second, dead letters two weeks
    stack = await hotpool_stack(**FAST, async_result_ttl_s=1)
    path = tmp_path / "ledger"
    await stack.deploy("orders", FAILING, async_retries=0, env={"LEDGER": str(path)})
    request_id = await send(stack.client, "orders", {"order": 5})
    assert (await wait_status(stack.client, request_id))["status"] == "failed"

    async def forgotten() -> bool:
        resp = await stack.client.get(f"/v1/invocations/{request_id}")
        return resp.status == 404

    assert await wait_for(forgotten, timeout_s=10)
    assert [d["request_id"] for d in await dead_letters(stack, "orders")] == [request_id]

    await stack.deploy("orders", FIXED, async_retries=0, env={"LEDGER": str(path)})
    assert (await redrive(stack, "orders"))["redriven"] == [request_id]
    done = await wait_status(stack.client, request_id)
    assert done["status"] == "succeeded" and done["result"] == {"handled": {"order": 5}}
    assert done["function"] == "orders" and done["trigger"] == "async"


async def test_deleting_a_function_drops_its_dead_letters(hotpool_stack, tmp_path):
    stack = await hotpool_stack(**FAST)
    env = {"LEDGER": str(tmp_path / "ledger")}
    await stack.deploy("doomed", FAILING, async_retries=0, env=env)
    request_id = await send(stack.client, "doomed", {})
    assert (await wait_status(stack.client, request_id))["status"] == "failed"
    assert len(await dead_letters(stack, "doomed")) == 1

    assert (await stack.client.delete("/v1/functions/doomed")).status == 200
    assert (await stack.deploy("doomed", FIXED, env=env)).status in (200, 201)

    assert await dead_letters(stack, "doomed") == []
    assert await redrive(stack, "doomed", [request_id]) == {
        "redriven": [], "not_found": [request_id]
    }  # fmt: skip


async def test_an_event_past_its_maximum_age_expires_without_running(hotpool_stack, tmp_path):
    # one slot: while the blocker runs, the next event stays unread in the stream
    stack = await hotpool_stack(**FAST, async_concurrency=1)
    blocker_path, path = tmp_path / "blocker", tmp_path / "ledger"
    await stack.deploy("blocker", ledger_zip("time.sleep(1.5)"), env={"LEDGER": str(blocker_path)})
    await stack.deploy("aged", FIXED, max_event_age_s=60, env={"LEDGER": str(path)})
    blocking = await send(stack.client, "blocker", {})
    await wait_status(stack.client, blocking, ("running",), timeout_s=10)

    request_id = await send(stack.client, "aged", {"order": 9})
    # accepted two minutes ago, as far as the queue knows
    await stack.redis.hset(async_keys.inv(request_id), "accepted_at", time.time() - 120)

    done = await wait_status(stack.client, request_id)
    assert done["status"] == "expired" and done["reason"] == "EventAgeExceeded"
    assert done["attempts"] == 0
    assert done["error"]["type"] == "EventAgeExceeded"
    (letter,) = await dead_letters(stack, "aged")
    assert letter["request_id"] == request_id and letter["reason"] == "EventAgeExceeded"
    assert letter["status"] == "expired" and letter["event"] == {"order": 9}
    assert ledger(path) == []  # the handler never ran for it
    assert (await wait_status(stack.client, blocking))["status"] == "succeeded"


async def test_an_event_of_a_deleted_function_fails_with_no_dead_letter(hotpool_stack, tmp_path):
    stack = await hotpool_stack(**FAST, async_concurrency=1)
    path = tmp_path / "ledger"
    await stack.deploy("blocker", ledger_zip("time.sleep(1.5)"), env={"LEDGER": str(path)})
    await stack.deploy("short-lived", FIXED, env={"LEDGER": str(path)})
    blocking = await send(stack.client, "blocker", {})
    await wait_status(stack.client, blocking, ("running",), timeout_s=10)

    request_id = await send(stack.client, "short-lived", {"order": 4})
    assert (await stack.client.delete("/v1/functions/short-lived")).status == 200

    done = await wait_status(stack.client, request_id)
    assert done["status"] == "failed" and done["reason"] == "NotFound"
    assert done["error"]["kind"] == "fatal"
    assert [line["id"] for line in ledger(path)] == [blocking]  # it never ran
    assert not await stack.redis.exists(async_keys.dead("short-lived"))


async def test_destinations_receive_lambdas_destination_record(hotpool_stack, tmp_path):
    stack = await hotpool_stack(**FAST)
    audit, alarm = tmp_path / "audit", tmp_path / "alarm"
    await stack.deploy("audit", FIXED, env={"LEDGER": str(audit)})
    await stack.deploy("alarm", FIXED, env={"LEDGER": str(alarm)})
    worker = ledger_zip(
        "if event['fail']:\n    raise RuntimeError('order refused')\nreturn {'paid': event['n']}"
    )
    deployed = await stack.deploy(
        "worker", worker, async_retries=0, on_success="audit", on_failure="alarm",
        env={"LEDGER": str(tmp_path / "worker")},
    )  # fmt: skip
    assert deployed.status == 201, await deployed.text()

    good = await send(stack.client, "worker", {"fail": False, "n": 5})
    assert (await wait_status(stack.client, good))["status"] == "succeeded"
    assert await wait_for(lambda: _lines(audit, 1), timeout_s=10)
    (success,) = [line["event"] for line in ledger(audit)]
    assert set(success) == {
        "version", "timestamp", "requestContext", "requestPayload", "responseContext",
        "responsePayload",
    }  # fmt: skip
    assert success["version"] == "1.0" and success["timestamp"].endswith("Z")
    context = success["requestContext"]
    assert context["requestId"] == good and context["condition"] == "Success"
    assert context["approximateInvokeCount"] == 1
    assert context["functionArn"].endswith(":function:worker:1")
    assert success["requestPayload"] == {"fail": False, "n": 5}
    assert success["responseContext"] == {"statusCode": 200, "executedVersion": "1"}
    assert success["responsePayload"] == {"paid": 5}

    bad = await send(stack.client, "worker", {"fail": True, "n": 6})
    assert (await wait_status(stack.client, bad))["status"] == "failed"
    assert await wait_for(lambda: _lines(alarm, 1), timeout_s=10)
    (failure,) = [line["event"] for line in ledger(alarm)]
    assert failure["requestContext"]["requestId"] == bad
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestPayload"] == {"fail": True, "n": 6}
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert failure["responsePayload"]["errorType"] == "RuntimeError"
    assert failure["responsePayload"]["errorMessage"] == "order refused"
    assert len(ledger(audit)) == 1  # each outcome went to its own destination only

    async def recorded() -> bool:
        return len(await records(stack.client, "audit")) == 1

    assert await wait_for(recorded, timeout_s=10)
    assert [r["trigger"] for r in await records(stack.client, "audit")] == ["destination"]


async def _lines(path, n: int) -> bool:
    return len(ledger(path)) >= n


@pytest.mark.parametrize("setting", ["on_success", "on_failure"])
async def test_a_function_cannot_be_its_own_destination(hotpool_stack, setting):
    stack = await hotpool_stack()
    resp = await stack.deploy("loop", FIXED, **{setting: "loop"})
    assert resp.status == 400
    assert setting in (await resp.json())["error"]["message"]
