"""What users' functions do to Docker containers, and what they get back: a clear error and a
fresh container, through the real Main + Manager stack."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import orjson
import pytest

from hotpool.manager.backend import ContainerSpec
from hotpool.manager.docker_backend import MANAGER_LABEL, DockerBackend
from hotpool.manager.process_backend import ProcessBackend, address_space_allowance_mb
from tests.helpers import handler_zip
from tests.services import RUNTIME_IMAGE
from tests.stack import require_docker, wait_for

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
IMAGES = {"python": RUNTIME_IMAGE}


@pytest.fixture
def stack_backend() -> str:
    return "docker"


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    await require_docker()
    async with aiodocker.Docker() as client:
        yield client


async def _labelled(docker: aiodocker.Docker, manager_id: str) -> set[str]:
    """Ids of the containers (running or not) carrying ``manager_id``'s label."""
    found = await docker.containers.list(
        all=True, filters={"label": [f"{MANAGER_LABEL}={manager_id}"]}
    )
    return {c.id for c in found}


async def _records(stack, name: str, n: int) -> list[dict]:
    async def enough() -> bool:
        resp = await stack.client.get(f"/v1/functions/{name}/invocations?limit=100")
        return len((await resp.json())["invocations"]) >= n

    assert await wait_for(enough), f"expected {n} records for {name}"
    resp = await stack.client.get(f"/v1/functions/{name}/invocations?limit=100")
    return orjson.loads(await resp.read())["invocations"]


def _host_processes(argv: list[str]) -> list[int]:
    """Pids of host processes running exactly ``argv`` (containers share the host's /proc)."""
    wanted = "\0".join(argv).encode() + b"\0"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == wanted:
                    pids.append(int(entry.name))
            except OSError:  # it ended while we looked
                pass
    return pids


async def test_out_of_memory_is_a_function_error_and_the_container_is_replaced(hotpool_stack):
    stack = await hotpool_stack()
    code = handler_zip(
        """
        if event.get("hog"):
            blob = b"x" * (200 * 1024 * 1024)  # written, so really resident
            return len(blob)
        return "ok"
        """
    )
    assert (await stack.deploy("hog", code, memory_mb=64)).status == 201
    assert (await stack.invoke("hog", {})).status == 200
    (first,) = stack.live_containers()

    resp = await stack.invoke("hog", {"hog": True})
    assert resp.status == 500, await resp.text()
    assert resp.headers["X-Hotpool-Function-Error"] == "OutOfMemory"
    error = (await resp.json())["error"]
    assert error["code"] == "FunctionError" and error["type"] == "OutOfMemory"
    assert "memory limit" in error["message"]
    assert first not in stack.live_containers()
    assert await stack.pool_entries("hog", 1) == []

    after = await stack.invoke("hog", {})
    assert after.status == 200 and await after.json() == "ok"
    assert after.headers["X-Hotpool-Cold-Start"] == "true"
    records = await _records(stack, "hog", 3)
    oom = next(r for r in records if r["request_id"] == resp.headers["X-Hotpool-Request-Id"])
    assert oom["status"] == "error" and oom["error"]["type"] == "OutOfMemory"


async def test_out_of_memory_while_the_module_loads_is_a_function_error(hotpool_stack):
    stack = await hotpool_stack()
    code = handler_zip("return 'never'", prelude="BLOB = b'x' * (200 * 1024 * 1024)")
    assert (await stack.deploy("hoginit", code, memory_mb=64)).status == 201
    resp = await stack.invoke("hoginit", {})
    body = await resp.json()
    assert resp.status == 500, body
    assert resp.headers["X-Hotpool-Function-Error"] == "OutOfMemory"
    assert "memory limit of 64 MB" in body["errorMessage"]
    assert not stack.live_containers()


async def test_out_of_memory_message_names_the_limit(hotpool_stack):
    stack = await hotpool_stack()
    code = handler_zip("blob = b'x' * (200 * 1024 * 1024)\nreturn len(blob)")
    assert (await stack.deploy("hog", code, memory_mb=64)).status == 201
    resp = await stack.invoke("hog", {})
    assert resp.headers["X-Hotpool-Function-Error"] == "OutOfMemory"
    assert "64 MB" in (await resp.json())["error"]["message"]


async def test_runtime_exit_is_a_function_error_naming_the_code(hotpool_stack):
    stack = await hotpool_stack()
    code = handler_zip("import os\nif event.get('die'):\n    os._exit(3)\nreturn 'ok'")
    assert (await stack.deploy("crash", code)).status == 201
    resp = await stack.invoke("crash", {"die": True})
    assert resp.status == 500, await resp.text()
    assert resp.headers["X-Hotpool-Function-Error"] == "RuntimeExited"
    error = (await resp.json())["error"]
    assert "code 3" in error["message"]
    assert stack.live_containers() == set()
    after = await stack.invoke("crash", {})
    assert after.status == 200 and after.headers["X-Hotpool-Cold-Start"] == "true"
    records = await _records(stack, "crash", 2)
    assert records[-1]["status"] == "error" and records[-1]["error"]["type"] == "RuntimeExited"


async def test_timeout_removes_the_container_and_its_background_processes(hotpool_stack, docker):
    stack = await hotpool_stack()
    # an odd duration, so no unrelated "sleep" on this host is mistaken for the function's
    sleeper = ["sleep", "307"]
    code = handler_zip(
        f"""
        import subprocess, time
        subprocess.Popen({sleeper!r})
        time.sleep(5)
        return "too late"
        """
    )
    assert (await stack.deploy("lingers", code, timeout_s=1)).status == 201
    call = asyncio.create_task(stack.invoke("lingers", {}))

    async def sleeping() -> bool:
        return bool(_host_processes(sleeper))

    assert await wait_for(sleeping), "the function's background process never started"
    (container_id,) = stack.live_containers()
    resp = await call
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "Timeout"

    async def all_gone() -> bool:
        return container_id not in await _labelled(
            docker, stack.manager.manager_id
        ) and not _host_processes(sleeper)

    assert await wait_for(all_gone, timeout_s=10)
    assert stack.live_containers() == set() and await stack.leases() == []


async def test_too_many_processes_hit_the_pids_limit(hotpool_stack):
    stack = await hotpool_stack()
    code = handler_zip(
        """
        import subprocess
        children = []
        failure = None
        try:
            for _ in range(500):
                children.append(subprocess.Popen(["sleep", "5"]))
        except OSError as exc:
            failure = type(exc).__name__
        for child in children:
            child.kill()
            child.wait()
        return {"started": len(children), "failure": failure}
        """
    )
    assert (await stack.deploy("forky", code)).status == 201
    resp = await stack.invoke("forky", {})
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert result["failure"] == "BlockingIOError"  # EAGAIN from the pids cgroup
    assert 0 < result["started"] < stack.settings.container_pids_limit
    # the container survived its function's fork storm and serves the next call
    again = await stack.invoke("forky", {})
    assert again.status == 200 and again.headers["X-Hotpool-Cold-Start"] == "false"


async def test_fork_bomb_left_running_does_not_wedge_the_function(hotpool_stack):
    stack = await hotpool_stack()
    code = handler_zip(
        """
        import subprocess
        started = 0
        if event.get("bomb"):
            try:
                for _ in range(500):
                    subprocess.Popen(["sleep", "30"])
                    started += 1
            except OSError as exc:
                return {"started": started, "failure": type(exc).__name__}
        return {"started": started, "failure": None}
        """
    )
    assert (await stack.deploy("bomb", code)).status == 201
    resp = await stack.invoke("bomb", {"bomb": True})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["failure"] == "BlockingIOError"
    # its children still hold every pid: the next call answers (on this container or a new one)
    again = await stack.invoke("bomb", {})
    assert again.status in (200, 500), await again.text()
    if again.status == 500:
        assert "X-Hotpool-Function-Error" in again.headers


async def test_killed_warm_container_is_evicted_and_replaced(hotpool_stack, docker):
    stack = await hotpool_stack()
    assert (await stack.deploy("victim", handler_zip("return 'ok'"))).status == 201
    assert (await stack.invoke("victim", {})).status == 200
    (entry,) = await stack.idle_entries("victim", 1)
    container_id = entry.split("|")[3]
    await docker.containers.container(container_id).kill()

    async def evicted() -> bool:
        return (
            await stack.pool_entries("victim", 1) == []
            and container_id not in stack.live_containers()
        )

    # the Docker event stream evicts it before any request is sent its way
    assert await wait_for(evicted, timeout_s=10)
    resp = await stack.invoke("victim", {})
    assert resp.status == 200 and await resp.json() == "ok"
    assert "X-Hotpool-Function-Error" not in resp.headers
    assert resp.headers["X-Hotpool-Cold-Start"] == "true"

    async def removed() -> bool:
        return container_id not in await _labelled(docker, stack.manager.manager_id)

    assert await wait_for(removed, timeout_s=10)  # the dead container is deleted, not kept


async def test_missing_runtime_image_names_the_build_script(hotpool_stack, docker):
    stack = await hotpool_stack(runtime_image_python="hotpool/does-not-exist:1")
    assert (await stack.deploy("noimage", handler_zip("return 1"))).status == 201
    resp = await stack.invoke("noimage", {})
    assert resp.status == 503
    error = (await resp.json())["error"]
    assert "deploy/build-images.sh" in error["message"]
    assert "hotpool/does-not-exist:1" in error["message"]
    assert "X-Hotpool-Function-Error" not in resp.headers
    assert stack.live_containers() == set()
    assert await _labelled(docker, stack.manager.manager_id) == set()


async def test_unreachable_daemon_fails_fast(hotpool_stack):
    stack = await hotpool_stack(docker_url="unix:///tmp/no-such-docker.sock")
    async with stack.client.session.get(f"{stack.settings.manager_url}/healthz") as resp:
        assert resp.status == 503
        assert (await resp.json())["status"] == "unhealthy"
    assert (await stack.deploy("nodaemon", handler_zip("return 1"))).status == 201
    begun = time.monotonic()
    resp = await stack.invoke("nodaemon", {})
    elapsed = time.monotonic() - begun
    assert resp.status == 503, await resp.text()
    assert elapsed < 10, f"invoke hung for {elapsed:.1f} s"  # a hang check, not a benchmark
    status = await (await stack.client.get("/system/status")).json()
    (manager,) = status["managers"]
    assert manager["id"] == stack.manager.manager_id and manager["accepting"] is False


@pytest.mark.parametrize("stack_backend", ["process", "docker"])
async def test_cold_start_uses_a_prewarmed_container_and_refills(hotpool_stack, stack_backend):
    stack = await hotpool_stack(prewarm_count=2)
    prewarm = stack.manager.prewarm

    async def full() -> bool:
        return prewarm.ready("python") == 2

    assert await wait_for(full, timeout_s=20)
    generic = prewarm.ids()
    assert len(generic) == 2
    # a different memory size than the pre-warmed one: specialising must apply it
    assert (await stack.deploy("warm", handler_zip("return 'ok'"), memory_mb=256)).status == 201
    resp = await stack.invoke("warm", {})
    assert resp.status == 200 and resp.headers["X-Hotpool-Cold-Start"] == "true"
    (serving,) = stack.live_containers()
    assert serving in generic  # one of the pre-warmed containers was specialised
    assert await _memory_limit_mb(stack, serving) == 256
    (record,) = await _records(stack, "warm", 1)
    assert record["cold_start"] is True and record["init_ms"] > 0

    async def refilled() -> bool:
        return prewarm.ready("python") == 2

    assert await wait_for(refilled, timeout_s=20)
    assert serving not in prewarm.ids() and len(prewarm.ids() - generic) == 1


@pytest.mark.parametrize("stack_backend", ["process", "docker"])
async def test_manager_lists_a_specialised_container_at_the_functions_memory(
    hotpool_stack, stack_backend
):
    stack = await hotpool_stack(prewarm_count=1)

    async def ready() -> bool:
        return stack.manager.prewarm.ready("python") == 1

    assert await wait_for(ready, timeout_s=20)
    assert (await stack.deploy("sized", handler_zip("return 1"), memory_mb=256)).status == 201
    assert (await stack.invoke("sized", {})).status == 200
    async with stack.client.session.get(
        f"{stack.settings.manager_url}/v1/containers", headers=stack.manager_headers
    ) as resp:
        (listed,) = (await resp.json())["containers"]
    assert await _memory_limit_mb(stack, listed["container_id"]) == 256
    assert listed["memory_mb"] == 256


async def _memory_limit_mb(stack, container_id: str) -> int:
    backend = stack.manager._backend
    if isinstance(backend, ProcessBackend):
        soft, _ = resource.prlimit(backend._procs[container_id].pid, resource.RLIMIT_AS)
        return soft // MiB - address_space_allowance_mb
    async with aiodocker.Docker() as docker:
        info = await docker.containers.container(container_id).show()
    return info["HostConfig"]["Memory"] // MiB


async def test_reconcile_removes_strays_of_this_manager_only(hotpool_stack, docker):
    manager_id = f"mgr-reconcile-{uuid.uuid4().hex[:8]}"
    other_id = f"mgr-reconcile-{uuid.uuid4().hex[:8]}"
    spec = ContainerSpec("python", 128)
    # a container left behind by a previous run of this Manager, and one of another Manager
    # on the same host, exactly as DockerBackend creates them
    left = [
        await docker.containers.run(
            DockerBackend(manager_id=mid, images=IMAGES).container_config(spec)
        )
        for mid in (manager_id, other_id)
    ]
    neighbour = left[1]
    try:
        stack = await hotpool_stack(manager_id=manager_id)

        async def reconciled() -> bool:
            return await _labelled(docker, manager_id) == set()

        assert await wait_for(reconciled, timeout_s=10)
        assert await _labelled(docker, other_id) == {neighbour.id}
        assert (await neighbour.show())["State"]["Running"]
        # and the Manager serves as usual afterwards
        assert (await stack.deploy("after", handler_zip("return 'ok'"))).status == 201
        assert (await stack.invoke("after", {})).status == 200
        assert await _labelled(docker, manager_id) == stack.live_containers()
    finally:
        for container in left:
            with contextlib.suppress(aiodocker.DockerError):
                await container.delete(force=True)
