"""The ``ContainerBackend`` contract, run against the process and the Docker backend alike."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import uuid
from collections.abc import AsyncIterator

import aiodocker
import aiohttp
import pytest

from hotpool.manager.backend import Container, ContainerBackend, ContainerSpec, ExitStatus
from hotpool.manager.docker_backend import MANAGER_LABEL, DockerBackend
from hotpool.manager.process_backend import ProcessBackend, address_space_allowance_mb
from hotpool.shared.errors import ContainerFailed, RuntimeImageMissing
from hotpool.shared.models import CONTAINER_SECRET_HEADER
from tests.services import RUNTIME_IMAGE
from tests.stack import require_docker, wait_for

IMAGES = {"python": RUNTIME_IMAGE}
MiB = 1024 * 1024


@pytest.fixture(params=["process", "docker"])
async def backend(request, tmp_path) -> AsyncIterator[ContainerBackend]:
    """A fresh backend of each kind, closed (every container removed) after the test."""
    if request.param == "docker":
        await require_docker()
        made: ContainerBackend = DockerBackend(
            manager_id=f"mgr-contract-{uuid.uuid4().hex[:8]}", images=IMAGES
        )
    else:
        made = ProcessBackend(tmp_path / "c")
    try:
        yield made
    finally:
        await made.close()


async def _health(container: Container) -> tuple[int, dict]:
    headers = {CONTAINER_SECRET_HEADER: container.secret}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(f"http://{container.address}/healthz", headers=headers) as resp:
            return resp.status, await resp.json()


async def _kill_from_outside(backend: ContainerBackend, container_id: str) -> None:
    """Kill a container the way the world does (OOM killer, operator), not through remove()."""
    if isinstance(backend, ProcessBackend):
        os.killpg(backend._procs[container_id].pid, signal.SIGKILL)
        return
    async with aiodocker.Docker() as docker:
        await docker.containers.container(container_id).kill()


async def _exists(backend: ContainerBackend, container_id: str, pid: int | None) -> bool:
    """Whether the container still exists, asked of the OS or the daemon, not the backend."""
    if isinstance(backend, ProcessBackend):
        assert pid is not None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    async with aiodocker.Docker() as docker:
        try:
            await docker.containers.container(container_id).show()
        except aiodocker.DockerError as exc:
            assert exc.status == 404
            return False
    return True


def _pid(backend: ContainerBackend, container_id: str) -> int | None:
    if isinstance(backend, ProcessBackend):
        return backend._procs[container_id].pid
    return None


@pytest.mark.contract
async def test_start_gives_a_generic_container_that_answers(backend):
    container = await backend.start(ContainerSpec("python", 128))
    assert container.runtime == "python" and container.memory_mb == 128
    status, body = await _health(container)
    assert status == 200
    assert body["status"] == "ok" and body["initialized"] is False
    assert await backend.alive(container.id)
    assert await backend.exit_status(container.id) is None
    assert await backend.exit_status(container.id, wait_s=0.2) is None  # waits, still running
    assert container.id in await backend.list_ids()
    assert await backend.healthy()


@pytest.mark.contract
async def test_remove_is_final_and_idempotent(backend):
    container = await backend.start(ContainerSpec("python", 128))
    pid = _pid(backend, container.id)
    await backend.remove(container.id)
    assert not await backend.alive(container.id)
    assert container.id not in await backend.list_ids()
    assert not await _exists(backend, container.id, pid)
    with pytest.raises(aiohttp.ClientConnectionError):
        await _health(container)
    await backend.remove(container.id)  # removing a removed container is not an error
    await backend.remove("never-existed")


@pytest.mark.contract
async def test_exit_listener_hears_an_outside_kill(backend):
    exited: list[str] = []

    async def listener(container_id: str) -> None:
        exited.append(container_id)

    backend.on_exit(listener)  # before start, as the Manager registers it
    container = await backend.start(ContainerSpec("python", 128))
    await _kill_from_outside(backend, container.id)

    async def heard() -> bool:
        return container.id in exited

    assert await wait_for(heard, timeout_s=10), "on_exit listener was never called"
    assert exited == [container.id]  # once, and for no other container
    assert not await backend.alive(container.id)
    status = await backend.exit_status(container.id, wait_s=1.0)
    assert isinstance(status, ExitStatus)
    assert not status.oom_killed
    error_type, message = status.describe()
    assert error_type == "RuntimeExited" and "signal 9" in message


@pytest.mark.contract
async def test_remove_does_not_call_exit_listeners(backend):
    exited: list[str] = []

    async def listener(container_id: str) -> None:
        exited.append(container_id)

    backend.on_exit(listener)
    container = await backend.start(ContainerSpec("python", 128))
    await backend.remove(container.id)
    await asyncio.sleep(0.5)  # give a (wrong) die event time to arrive
    assert exited == []


@pytest.mark.contract
async def test_set_memory_on_a_running_container(backend):
    container = await backend.start(ContainerSpec("python", 128))
    await backend.set_memory(container.id, 256)
    assert await backend.alive(container.id)
    assert (await _health(container))[0] == 200
    if isinstance(backend, ProcessBackend):
        soft, _ = resource.prlimit(backend._procs[container.id].pid, resource.RLIMIT_AS)
        assert soft == (256 + address_space_allowance_mb) * MiB
    else:
        async with aiodocker.Docker() as docker:
            info = await docker.containers.container(container.id).show()
        assert info["HostConfig"]["Memory"] == 256 * MiB
        assert info["HostConfig"]["MemorySwap"] == 256 * MiB


@pytest.mark.contract
async def test_close_removes_every_container(backend):
    started = [await backend.start(ContainerSpec("python", 128)) for _ in range(2)]
    pids = {c.id: _pid(backend, c.id) for c in started}
    await backend.close()
    for container in started:
        assert not await _exists(backend, container.id, pids[container.id])
    await backend.close()  # the fixture closes again: closing twice is harmless


@pytest.mark.contract
async def test_unknown_runtime_is_a_missing_image(backend):
    with pytest.raises(RuntimeImageMissing, match=r"deploy/build-images\.sh"):
        container = await backend.start(ContainerSpec("cobol", 128))
        await backend.remove(container.id)  # only reached when the bug is there
    assert await backend.list_ids() == set()


@pytest.mark.integration
async def test_missing_docker_image_names_the_build_script():
    await require_docker()
    manager_id = f"mgr-contract-{uuid.uuid4().hex[:8]}"
    backend = DockerBackend(manager_id=manager_id, images={"python": "hotpool/does-not-exist:1"})
    try:
        with pytest.raises(RuntimeImageMissing, match=r"deploy/build-images\.sh") as caught:
            await backend.start(ContainerSpec("python", 128))
        assert "hotpool/does-not-exist:1" in caught.value.message
        async with aiodocker.Docker() as docker:
            left = await docker.containers.list(
                all=True, filters={"label": [f"{MANAGER_LABEL}={manager_id}"]}
            )
        assert left == []
    finally:
        await backend.close()


@pytest.mark.integration
async def test_docker_container_dying_while_starting_fails_with_its_own_status(monkeypatch):
    await require_docker()
    backend = DockerBackend(manager_id=f"mgr-contract-{uuid.uuid4().hex[:8]}", images=IMAGES)

    async def listener(container_id: str) -> None:
        pass

    backend.on_exit(listener)  # the event stream is what notices the death, as in a Manager
    try:
        earlier = await backend.start(ContainerSpec("python", 128))
        await _kill_from_outside(backend, earlier.id)
        assert await wait_for(lambda: _has_exited(backend, earlier.id))
        # a container needing 64 MB before it answers, under 6 MB (Docker's minimum): it is
        # OOM-killed while booting (the bootstrap alone now boots within 6 MB)
        config = backend.container_config
        greedy = {"Entrypoint": ["python3", "-I", "-S", "-c", "b'x' * (64 << 20)"]}
        monkeypatch.setattr(backend, "container_config", lambda spec: config(spec) | greedy)
        with pytest.raises(ContainerFailed) as caught:
            await backend.start(ContainerSpec("python", 6))
        message = caught.value.message
        assert "oom" in message.lower() or "memory" in message.lower()
        assert earlier.id not in message  # its own exit, not every exit the backend has seen
        assert await backend.list_ids() <= {earlier.id}  # the failed one was removed
    finally:
        await backend.close()


async def _has_exited(backend: ContainerBackend, container_id: str) -> bool:
    return await backend.exit_status(container_id) is not None
