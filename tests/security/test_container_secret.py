"""Issue 12 item 1: a function could call another tenant's container.

A container's bootstrap answered anyone who reached its port: a function scanning the host's
published ports ran another tenant's handler (/invoke) or broke its next cold start (/init on a
pre-warmed container). Now every container has its own secret, which only its Manager and Main
know and which the bootstrap demands on every path. These tests attack from outside (raw
requests) and from inside a function, on both backends, and check that the function cannot find
its own container's secret either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiodocker
import aiohttp
import orjson
import pytest

from hotpool.manager.backend import ContainerState
from hotpool.manager.docker_backend import FUNCTION_NETWORK
from hotpool.shared.models import CONTAINER_SECRET_HEADER, PoolEntry
from tests.helpers import handler_zip
from tests.stack import Stack, StackFactory, wait_for

pytestmark = pytest.mark.integration

# Counts its own runs in a file of its container: a raw call that ran it would show.
COUNTER = handler_zip(
    """
    # the working directory is the function's own code directory, in its container
    with open("runs.txt", "a") as f:
        f.write("x")
    with open("runs.txt") as f:
        return {"runs": len(f.read()), "secret": os.environ.get("TENANT_SECRET")}
    """,
    prelude="import os",
)

# From inside a function: call every address in the event on every bootstrap path.
ATTACKER = handler_zip(
    """
    results = {}
    for address in event["targets"]:
        for method, path, body in (
            ("POST", "/invoke", b"{}"),
            ("POST", "/init", b"{}"),
            ("GET", "/healthz", None),
        ):
            request = urllib.request.Request(f"http://{address}{path}", body, method=method)
            try:
                with urllib.request.urlopen(request, timeout=3) as resp:
                    results[f"{method} {address}{path}"] = [resp.status, resp.read().decode()]
            except urllib.error.HTTPError as exc:
                results[f"{method} {address}{path}"] = [exc.code, exc.read().decode()]
            except OSError as exc:
                results[f"{method} {address}{path}"] = [None, repr(exc)]
    return results
    """,
    prelude="import urllib.error, urllib.request",
)

# Everywhere user code could look for the secret in its environment.
SEEKER = handler_zip(
    """
    places = {"os.environ": repr(dict(os.environ))}
    for pid in ["self", str(os.getpid()), str(os.getppid()), "1"] + os.listdir("/proc"):
        if not pid.isdigit() and pid != "self":
            continue
        for name in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    places[f"/proc/{pid}/{name}"] = f.read().decode("latin-1")
            except OSError:
                pass
    try:
        places["stdin"] = os.read(0, 4096).decode("latin-1")
    except OSError as exc:
        places["stdin"] = repr(exc)
    return {"ppid": os.getppid(), "places": places}
    """,
    prelude="import os",
)


@pytest.fixture(params=["process", "docker"])
def stack_backend(request) -> str:
    return request.param


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def functions_gateway(hotpool_stack: StackFactory) -> str:
    """The gateway of the functions' Docker bridge: the host as its containers reach it."""
    async with aiodocker.Docker() as docker:
        try:
            network = await docker.networks.get(FUNCTION_NETWORK)
        except aiodocker.DockerError:
            # the first container start creates it
            stack = await hotpool_stack()
            assert (await stack.deploy("warmup", COUNTER)).status == 201
            assert (await stack.invoke("warmup", {})).status == 200
            network = await docker.networks.get(FUNCTION_NETWORK)
        return (await network.show())["IPAM"]["Config"][0]["Gateway"]


async def attackable_stack(hotpool_stack: StackFactory, backend: str, **overrides: Any) -> Stack:
    """A stack whose containers are published on an address functions can reach, as in the
    README's production recipe (Docker), or on 127.0.0.1 (process backend)."""
    if backend == "docker":
        overrides["advertise_host"] = await functions_gateway(hotpool_stack)
    return await hotpool_stack(**overrides)


async def warm_entry(stack: Stack, name: str) -> PoolEntry:
    """Deploy the counter as ``name``, call it once, and return its idle container's entry."""
    assert (await stack.deploy(name, COUNTER, env={"TENANT_SECRET": f"{name}-env"})).status == 201
    reply = await stack.invoke(name, {})
    assert reply.status == 200, await reply.text()
    assert (await reply.json())["runs"] == 1
    return PoolEntry.decode((await stack.idle_entries(name, 1))[0])


async def raw(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> int:
    async with http.request(method, url, **kwargs) as resp:
        body = await resp.read()
    if resp.status == 401:
        assert orjson.loads(body)["error"]["type"] == "Unauthorized"
    return resp.status


async def test_requests_without_the_secret_are_refused_and_run_nothing(
    hotpool_stack, stack_backend, http
):
    stack = await hotpool_stack(prewarm_count=1)
    entry = await warm_entry(stack, "victim")
    assert await wait_for(lambda: _spare(stack), 60)
    spare = (await _spare(stack)).container
    init_body = orjson.dumps({"function_name": "victim", "function_version": 1})
    for headers in ({}, {CONTAINER_SECRET_HEADER: "wrong"}, {CONTAINER_SECRET_HEADER: ""}):
        for address in (entry.address, spare.address):
            base = f"http://{address}"
            assert await raw(http, "POST", base + "/invoke", data=b"{}", headers=headers) == 401
            assert await raw(http, "POST", base + "/init", data=init_body, headers=headers) == 401
            assert await raw(http, "GET", base + "/healthz", headers=headers) == 401
            assert await raw(http, "GET", base + "/nowhere", headers=headers) == 401

    # nothing ran, and the pre-warmed container still takes a function's code
    reply = await stack.invoke("victim", {})
    assert (await reply.json())["runs"] == 2
    assert (await stack.deploy("other", COUNTER)).status == 201
    reply = await stack.invoke("other", {})
    assert reply.status == 200, await reply.text()
    assert (await reply.json())["runs"] == 1


async def _spare(stack: Stack) -> Any:
    spares = stack.manager.containers.spares(ContainerState.GENERIC)
    return spares[0] if spares else None


async def test_a_function_cannot_call_another_tenants_container(hotpool_stack, stack_backend, http):
    stack = await attackable_stack(hotpool_stack, stack_backend)
    victims = [await warm_entry(stack, name) for name in ("victim-a", "victim-b")]
    # every one of them answers its Manager and Main: reachable, and the secret opens it
    for entry in victims:
        headers = {CONTAINER_SECRET_HEADER: entry.secret}
        assert await raw(http, "GET", f"http://{entry.address}/healthz", headers=headers) == 200

    assert (await stack.deploy("attacker", ATTACKER)).status == 201
    targets = [entry.address for entry in victims]
    reply = await stack.invoke("attacker", {"targets": targets})
    assert reply.status == 200, await reply.text()
    results = await reply.json()
    assert len(results) == 3 * len(targets)
    assert {call: status for call, (status, _) in results.items()} == dict.fromkeys(results, 401)
    assert not any("-env" in body for _, body in results.values())

    for entry in victims:  # neither victim ran, and each still serves its own tenant
        reply = await stack.invoke(entry.function, {})
        assert (await reply.json())["runs"] == 2


async def test_a_function_cannot_find_its_containers_secret(hotpool_stack, stack_backend):
    stack = await hotpool_stack()
    assert (await stack.deploy("seeker", SEEKER)).status == 201
    reply = await stack.invoke("seeker", {})
    assert reply.status == 200, await reply.text()
    found = await reply.json()
    secret = PoolEntry.decode((await stack.idle_entries("seeker", 1))[0]).secret
    assert len(secret) >= 32
    # it did look: its own environment, its runtime's (self) and its parent's (Docker's init)
    looked = {"os.environ", "/proc/self/environ", f"/proc/{found['ppid']}/environ"}
    assert looked <= set(found["places"])
    leaks = [place for place, text in found["places"].items() if secret in text]
    assert leaks == []
