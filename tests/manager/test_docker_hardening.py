"""Every Docker function container is locked down: limits, read-only root, no privileges."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiodocker
import aiohttp
import pytest

from hotpool.manager.backend import ContainerSpec
from hotpool.manager.docker_backend import (
    BOOTSTRAP_PORT,
    MANAGER_LABEL,
    RUNTIME_LABEL,
    DockerBackend,
)
from hotpool.manager.docker_network import FUNCTION_NETWORK
from hotpool.shared.models import CONTAINER_SECRET_HEADER
from tests.helpers import handler_zip
from tests.services import RUNTIME_IMAGE
from tests.stack import require_docker

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


async def test_container_config_is_hardened(docker):
    manager_id = f"mgr-harden-{uuid.uuid4().hex[:8]}"
    backend = DockerBackend(manager_id=manager_id, images=IMAGES)
    try:
        container = await backend.start(ContainerSpec("python", 96))
        info = await docker.containers.container(container.id).show()
    finally:
        await backend.close()
    host = info["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 96 * MiB  # no swap on top
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == 128
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"] and "size=768m" in host["Tmpfs"]["/tmp"]
    # native extensions of the code and layers unpacked there must load; setuid must not work
    assert {"exec", "nosuid", "nodev"} <= set(host["Tmpfs"]["/tmp"].split(","))
    assert "ALL" in host["CapDrop"]
    assert not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Init"] is True
    assert host["Privileged"] is False
    assert host["IpcMode"] == "none"  # no /dev/shm: /tmp is the only writable place
    # output past the bootstrap's capture cannot fill the host's disk
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
    assert info["Config"]["User"] == "10001:10001"
    labels = info["Config"]["Labels"]
    assert labels[MANAGER_LABEL] == manager_id and labels[RUNTIME_LABEL] == "python"


async def test_main_on_this_host_calls_the_container_on_the_bridge_with_nothing_published(docker):
    backend = DockerBackend(manager_id=f"mgr-reach-{uuid.uuid4().hex[:8]}", images=IMAGES)
    try:  # advertised on loopback: Main runs here and reaches the bridge
        container = await backend.start(ContainerSpec("python", 96))
        info = await docker.containers.container(container.id).show()
        status, _ = await call_healthz(container)
    finally:
        await backend.close()
    assert not info["HostConfig"]["PortBindings"]  # no host port, no userland proxy
    assert not info["NetworkSettings"]["Ports"].get(BOOTSTRAP_PORT)
    ip = info["NetworkSettings"]["Networks"][FUNCTION_NETWORK]["IPAddress"]
    assert (container.address, status) == (f"{ip}:8080", 200)


async def test_a_published_container_is_bound_on_the_advertised_address_only(docker):
    backend = DockerBackend(
        manager_id=f"mgr-reach-{uuid.uuid4().hex[:8]}", images=IMAGES, reach="published"
    )
    try:
        container = await backend.start(ContainerSpec("python", 96))
        info = await docker.containers.container(container.id).show()
        status, _ = await call_healthz(container)
    finally:
        await backend.close()
    # published on loopback only: nothing outside this host reaches a function container
    bindings = info["NetworkSettings"]["Ports"][BOOTSTRAP_PORT]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
    assert (container.address, status) == (f"127.0.0.1:{bindings[0]['HostPort']}", 200)


async def call_healthz(container) -> tuple[int, str]:
    headers = {CONTAINER_SECRET_HEADER: container.secret}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(f"http://{container.address}/healthz", headers=headers) as resp:
            return resp.status, await resp.text()


PROBE = handler_zip(
    """
    import errno, os
    found = {"uid": os.getuid(), "gid": os.getgid()}
    try:
        with open("/var/runtime/x", "w") as f:  # the bootstrap, on the root filesystem
            f.write("nope")
        found["opt"] = "written"
    except OSError as exc:
        found["opt"] = errno.errorcode[exc.errno]
    try:
        with open("/dev/shm/x", "w") as f:
            f.write("nope")
        found["shm"] = "written"
    except OSError as exc:
        found["shm"] = errno.errorcode[exc.errno]
    with open("/tmp/x", "w") as f:
        f.write("scratch")
    with open("/tmp/x") as f:
        found["tmp"] = f.read()
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs"):
                found[key] = value.strip()
    return found
    """
)


async def test_function_sees_a_locked_down_container(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("probe", PROBE)).status == 201
    resp = await stack.invoke("probe", {})
    assert resp.status == 200, await resp.text()
    found = await resp.json()
    assert found["opt"] == "EROFS"  # the root filesystem is read-only, not merely not ours
    assert found["shm"] == "ENOENT"  # not even mounted
    assert found["tmp"] == "scratch"
    assert found["uid"] == 10001 and found["gid"] == 10001
    assert found["CapEff"] == found["CapPrm"] == "0000000000000000"
    assert found["CapBnd"] == "0000000000000000"
    assert found["NoNewPrivs"] == "1"
