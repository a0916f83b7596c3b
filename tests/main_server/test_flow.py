"""The whole invoke path through create_app with the process backend (BRIEF §3 invariants)."""

from __future__ import annotations

import asyncio
import itertools
import os

import orjson
import pytest

from tests.helpers import handler_zip, make_zip
from tests.stack import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(params=["process", "docker"])
def stack_backend(request) -> str:
    """Every flow test runs on both container backends."""
    return request.param


HELLO = handler_zip("return {'hello': (event or {}).get('name', 'world')}")


async def test_cold_then_warm_and_records(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.deploy("hello", HELLO)
    assert resp.status == 201, await resp.text()
    deployed = await resp.json()
    assert deployed["version"] == 1 and len(deployed["code_sha256"]) == 64

    first = await stack.invoke("hello", {"name": "Ada"})
    assert first.status == 200
    assert await first.json() == {"hello": "Ada"}
    assert first.headers["X-Hotpool-Cold-Start"] == "true"
    second = await stack.invoke("hello", {"name": "Bob"})
    assert await second.json() == {"hello": "Bob"}
    assert second.headers["X-Hotpool-Cold-Start"] == "false"
    assert float(second.headers["X-Hotpool-Duration-Ms"]) > 0
    ids = [first.headers["X-Hotpool-Request-Id"], second.headers["X-Hotpool-Request-Id"]]

    async def two_records() -> bool:
        resp = await stack.client.get("/v1/functions/hello/invocations?limit=10")
        return len((await resp.json())["invocations"]) == 2

    assert await wait_for(two_records)
    records = (await (await stack.client.get("/v1/functions/hello/invocations")).json())[
        "invocations"
    ]
    assert [r["request_id"] for r in records] == ids[::-1]  # newest first
    assert [r["cold_start"] for r in records] == [False, True]
    assert records[1]["init_ms"] > 0 and records[0]["init_ms"] is None
    for r in records:
        assert r["status"] == "success" and r["version"] == 1
        assert r["handler_ms"] >= 0 and r["peak_memory_mb"] > 0 and r["duration_ms"] > 0
    # one container served both: it is back in the pool, nothing is leased
    assert len(await stack.pool_entries("hello", 1)) == 1
    assert await stack.leases() == []
    assert len(stack.live_containers()) == 1


async def test_function_error_is_distinct_from_platform_errors(hotpool_stack):
    stack = await hotpool_stack()
    code = handler_zip("print('about to fail')\nraise KeyError('missing thing')")
    assert (await stack.deploy("fails", code)).status == 201
    resp = await stack.invoke("fails", {})
    assert resp.status == 500
    assert resp.headers["X-Hotpool-Function-Error"] == "KeyError"
    body = await resp.json()
    assert body["error"]["code"] == "FunctionError"
    assert body["error"]["type"] == "KeyError"
    assert "missing thing" in body["error"]["message"]
    assert "raise KeyError" in body["error"]["traceback"]
    assert "about to fail" not in await resp.text()  # stdout goes to the record only
    # the container survived the user's exception and is reused
    again = await stack.invoke("fails", {})
    assert again.headers["X-Hotpool-Cold-Start"] == "false"
    records = await _records(stack, "fails", 2)
    assert records[0]["status"] == "error" and records[0]["error"]["type"] == "KeyError"
    assert "about to fail" in records[0]["stdout"]


async def test_import_error_is_a_function_error_at_init(hotpool_stack):
    stack = await hotpool_stack()
    code = make_zip({"main.py": "raise RuntimeError('broken at import')\ndef handler(e, c): pass"})
    assert (await stack.deploy("broken", code)).status == 201
    resp = await stack.invoke("broken", {})
    assert resp.status == 500
    assert resp.headers["X-Hotpool-Function-Error"] == "RuntimeError"
    assert "broken at import" in (await resp.json())["error"]["message"]
    assert stack.live_containers() == set()  # the failed container was removed


async def test_timeout_kills_the_container(hotpool_stack):
    stack = await hotpool_stack()
    code = handler_zip("import time\ntime.sleep(event['s'])\nreturn 'done'")
    assert (await stack.deploy("sleepy", code, timeout_s=0.5)).status == 201
    ok = await stack.invoke("sleepy", {"s": 0})
    assert ok.status == 200
    (container,) = stack.live_containers()
    resp = await stack.invoke("sleepy", {"s": 5})
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "Timeout"
    assert "X-Hotpool-Function-Error" not in resp.headers
    # killed, never reused: gone from the Manager, the pool and the leases
    assert container not in stack.live_containers()
    assert await stack.pool_entries("sleepy", 1) == []
    assert await stack.leases() == []
    after = await stack.invoke("sleepy", {"s": 0})
    assert after.status == 200 and after.headers["X-Hotpool-Cold-Start"] == "true"
    records = await _records(stack, "sleepy", 3)
    assert [r["status"] for r in records] == ["success", "timeout", "success"]


async def test_update_never_serves_old_version(hotpool_stack):
    stack = await hotpool_stack()
    v1 = handler_zip("import time\ntime.sleep((event or {}).get('s', 0))\nreturn 'v1'")
    v2 = handler_zip("return 'v2'")
    assert (await stack.deploy("app", v1)).status == 201
    assert await (await stack.invoke("app", {})).json() == "v1"
    # a v1 call is still running while v2 is deployed
    slow = asyncio.create_task(stack.invoke("app", {"s": 1.0}))
    await wait_for(lambda: _leased(stack, 1))
    resp = await stack.deploy("app", v2)
    assert resp.status == 200 and (await resp.json())["version"] == 2
    new = await stack.invoke("app", {})
    assert await new.json() == "v2"
    assert new.headers["X-Hotpool-Cold-Start"] == "true"
    assert await (await slow).json() == "v1"  # the in-flight call finishes on v1
    # the v1 container did not go back to any list: it was removed on release (which runs
    # just after the answer, so the removal is waited for)
    (entry,) = await stack.idle_entries("app", 2)

    async def only_v2_lives() -> bool:
        return stack.live_containers() == {entry.split("|")[3]}

    assert await wait_for(only_v2_lives)
    assert await stack.pool_entries("app", 1) == []
    for _ in range(5):
        assert await (await stack.invoke("app", {})).json() == "v2"


async def test_delete_removes_warm_containers(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("gone", HELLO)).status == 201
    assert (await stack.invoke("gone", {})).status == 200
    assert len(stack.live_containers()) == 1
    resp = await stack.client.delete("/v1/functions/gone")
    assert resp.status == 200
    assert (await resp.json())["containers_removed"] == 1
    assert stack.live_containers() == set()
    assert (await stack.invoke("gone", {})).status == 404
    assert (await stack.client.get("/v1/functions/gone")).status == 404
    assert (await stack.client.delete("/v1/functions/gone")).status == 404
    # a new function of the same name continues the version numbers: no stale pool list
    resp = await stack.deploy("gone", HELLO)
    assert (await resp.json())["version"] == 2


async def test_list_and_get_functions_mask_env(hotpool_stack):
    stack = await hotpool_stack()
    await stack.deploy("b-fn", HELLO, env={"TOKEN": "secret"}, memory_mb=256, timeout_s=3)
    await stack.deploy("a-fn", HELLO)
    listed = (await (await stack.client.get("/v1/functions")).json())["functions"]
    assert [f["name"] for f in listed] == ["a-fn", "b-fn"]
    got = await (await stack.client.get("/v1/functions/b-fn")).json()
    assert got["memory_mb"] == 256 and got["timeout_s"] == 3
    assert got["env"] == {"TOKEN": "***"}
    assert "secret" not in await (await stack.client.get("/v1/functions")).text()


async def test_env_and_context_reach_the_handler(hotpool_stack):
    stack = await hotpool_stack()
    os.environ["HOTPOOL_TEST_LEAK"] = "manager-secret"
    try:
        code = handler_zip(
            """
            import os
            return {
                "token": os.environ.get("TOKEN"),
                "leak": os.environ.get("HOTPOOL_TEST_LEAK"),
                "request_id": context.aws_request_id,
                "name": context.function_name,
                "version": context.function_version,
                "memory": context.memory_limit_in_mb,
                "group": context.log_group_name,
                "remaining": context.get_remaining_time_in_millis(),
            }
            """
        )
        await stack.deploy("ctx", code, env={"TOKEN": "t0k"}, memory_mb=200, timeout_s=7)
        resp = await stack.invoke("ctx", {})
        body = await resp.json()
    finally:
        del os.environ["HOTPOOL_TEST_LEAK"]
    assert body["token"] == "t0k"
    assert body["leak"] is None  # nothing of the Manager's environment reaches functions
    assert body["request_id"] == resp.headers["X-Hotpool-Request-Id"]
    # memory_limit_in_mb is a str, as on Lambda (awslambdaric reads it from the environment)
    assert body["name"] == "ctx" and body["version"] == "1" and body["memory"] == "200"
    assert body["group"].endswith("ctx")
    assert 0 < body["remaining"] <= 7000


async def test_async_handler_and_output_capture(hotpool_stack):
    stack = await hotpool_stack()
    code = make_zip(
        {
            "main.py": """
import asyncio, sys
async def handler(event, context):
    await asyncio.sleep(0.01)
    print("out line")
    print("err line", file=sys.stderr)
    return {"async": True}
"""
        }
    )
    await stack.deploy("asyncfn", code)
    resp = await stack.invoke("asyncfn", {})
    assert await resp.json() == {"async": True}
    (record,) = await _records(stack, "asyncfn", 1)
    assert record["stdout"] == "out line\n" and record["stderr"] == "err line\n"


async def test_concurrent_invocations_keep_the_invariants(hotpool_stack):
    stack = await hotpool_stack()
    code = handler_zip(
        """
        import os, socket, time
        start = time.time()
        time.sleep(0.05)
        # pid alone repeats across Docker containers (each has its own pid namespace)
        return {"pid": f"{socket.gethostname()}/{os.getpid()}", "start": start, "end": time.time()}
        """
    )
    await stack.deploy("busy", code)
    responses = await asyncio.gather(*(stack.invoke("busy", {"i": i}) for i in range(50)))
    assert [r.status for r in responses] == [200] * 50
    results = [await r.json() for r in responses]
    by_container: dict[str, list[tuple[float, float]]] = {}
    for result in results:
        by_container.setdefault(result["pid"], []).append((result["start"], result["end"]))
    # invariant 1: a container never runs two invocations at once
    for spans in by_container.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end
    # invariant 2: once traffic stops, pool entries == live containers, nothing leased
    entries = await stack.pool_entries("busy", 1)
    assert len(entries) == len(set(entries))
    assert {e.split("|")[3] for e in entries} == stack.live_containers()
    assert await stack.leases() == []
    assert len(stack.live_containers()) == len(by_container)
    records = await _records(stack, "busy", 50)
    assert len({r["request_id"] for r in records}) == 50


async def test_idle_reaper_removes_idle_containers(hotpool_stack):
    stack = await hotpool_stack(idle_ttl_s=0.3, reaper_interval_s=0.1)
    await stack.deploy("idle", HELLO)
    assert (await stack.invoke("idle", {})).status == 200
    assert len(stack.live_containers()) == 1

    async def reaped() -> bool:
        return not stack.live_containers()

    assert await wait_for(reaped, timeout_s=10)
    assert await stack.pool_entries("idle", 1) == []
    resp = await stack.invoke("idle", {})
    assert resp.headers["X-Hotpool-Cold-Start"] == "true"


async def test_status_and_health(hotpool_stack):
    stack = await hotpool_stack()
    assert await (await stack.client.get("/healthz")).json() == {"status": "ok"}
    # the call holds its container for seconds: long past the status read on a busy machine
    await stack.deploy("st", handler_zip("import time\ntime.sleep(event.get('s', 0))\nreturn 1"))
    assert (await stack.invoke("st", {})).status == 200
    call = asyncio.create_task(stack.invoke("st", {"s": 3}))
    await wait_for(lambda: _leased(stack, 1))
    status = await (await stack.client.get("/system/status")).json()
    assert (await call).status == 200
    assert status["status"] == "online" and status["managers_online"] == 1
    assert status["managers"][0]["id"] == stack.manager.manager_id
    assert status["containers"]["by_function"]["st:1"] == {"warm": 0, "busy": 1, "starting": 0}
    assert status["containers"]["by_runtime"]["python"] == {"warm": 0, "busy": 1, "starting": 0}
    assert status["invocations_in_flight"] == 1


async def _leased(stack, n: int) -> bool:
    return len(await stack.leases()) == n


async def _records(stack, name: str, n: int) -> list[dict]:
    async def enough() -> bool:
        resp = await stack.client.get(f"/v1/functions/{name}/invocations?limit=100")
        return len((await resp.json())["invocations"]) >= n

    assert await wait_for(enough), f"expected {n} records for {name}"
    resp = await stack.client.get(f"/v1/functions/{name}/invocations?limit=100")
    return orjson.loads(await resp.read())["invocations"]
