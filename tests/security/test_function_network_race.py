"""A fresh machine: Managers starting at once create the functions' network once.

Docker lets two networks share a name; once there are two, a container asking for the network
by name fails with "network ... is ambiguous", for ever. Two Managers (two backends with their
own manager ids) start containers at the same moment, on a daemon where the network is missing
and on one where a duplicate already exists: every start succeeds and every container lands on
the same network. Each test has a network name of its own, so other tests running meanwhile on
this daemon keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiodocker
import pytest
from aiodocker.networks import DockerNetwork

from hotpool.manager.backend import ContainerSpec
from hotpool.manager.docker_backend import DockerBackend
from hotpool.manager.docker_network import ICC_OPTION
from tests.services import RUNTIME_IMAGE
from tests.stack import require_docker

pytestmark = pytest.mark.integration

STARTS_PER_MANAGER = 3


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    await require_docker()
    async with aiodocker.Docker() as client:
        yield client


@pytest.fixture
async def network_name(docker) -> AsyncIterator[str]:
    """A network name no other test uses; every network of that name is removed afterwards."""
    name = f"hotpool-functions-race-{uuid.uuid4().hex[:8]}"
    yield name
    for network in await _networks_named(docker, name):
        with contextlib.suppress(aiodocker.DockerError):
            await DockerNetwork(docker, network["Id"]).delete()


async def _networks_named(docker: aiodocker.Docker, name: str) -> list[dict]:
    # the daemon's name filter also matches parts of names
    return [n for n in await docker.networks.list(filters={"name": [name]}) if n["Name"] == name]


async def _start_at_once(network: str) -> tuple[list, list[DockerBackend]]:
    """Two Managers each starting several containers at the same moment."""
    backends = [
        DockerBackend(
            manager_id=f"mgr-race-{uuid.uuid4().hex[:8]}",
            images={"python": RUNTIME_IMAGE},
            network=network,
        )
        for _ in range(2)
    ]
    starts = [
        backend.start(ContainerSpec("python", 96))
        for _ in range(STARTS_PER_MANAGER)
        for backend in backends
    ]
    return await asyncio.gather(*starts, return_exceptions=True), backends


async def _networks_of(docker: aiodocker.Docker, container_ids: list[str]) -> set[str]:
    ids: set[str] = set()
    for container_id in container_ids:
        info = await docker.containers.container(container_id).show()
        ids |= {n["NetworkID"] for n in info["NetworkSettings"]["Networks"].values()}
    return ids


async def _check_one_network(
    docker: aiodocker.Docker, network: str, prepare: Callable[[], Awaitable[None]]
) -> None:
    await prepare()
    results, backends = await _start_at_once(network)
    try:
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []
        attached = await _networks_of(docker, [c.id for c in results])
        remaining = await _networks_named(docker, network)
        assert len(attached) == 1  # every container on the one network
        assert [n["Id"] for n in remaining] == list(attached)  # the duplicate is gone
        assert remaining[0]["Options"].get(ICC_OPTION) == "false"
    finally:
        await asyncio.gather(*(b.close() for b in backends))


async def test_managers_starting_at_once_on_a_fresh_daemon_share_one_network(docker, network_name):
    async def nothing_there() -> None:
        assert await _networks_named(docker, network_name) == []

    await _check_one_network(docker, network_name, nothing_there)


async def test_managers_recover_from_a_duplicate_network(docker, network_name):
    async def two_of_them() -> None:
        for _ in range(2):
            await docker.networks.create(
                {
                    "Name": network_name,
                    "Driver": "bridge",
                    "CheckDuplicate": False,
                    "Options": {ICC_OPTION: "false"},
                }
            )
        assert len(await _networks_named(docker, network_name)) == 2

    await _check_one_network(docker, network_name, two_of_them)


async def test_managers_start_containers_while_a_duplicate_in_use_cannot_be_removed(
    docker, network_name
):
    older, newer = [
        await docker.networks.create(
            {"Name": network_name, "CheckDuplicate": False, "Options": {ICC_OPTION: "false"}}
        )
        for _ in range(2)
    ]
    # a container on the newer one: Docker refuses to remove it, so it stays a duplicate
    squatter = await docker.containers.create(
        {
            "Image": RUNTIME_IMAGE,
            "Entrypoint": ["sleep", "60"],
            "HostConfig": {"NetworkMode": newer.id, "AutoRemove": True},
            "NetworkingConfig": {"EndpointsConfig": {network_name: {"NetworkID": newer.id}}},
        }
    )
    try:
        await squatter.start()
        results, backends = await _start_at_once(network_name)
        try:
            assert [r for r in results if isinstance(r, BaseException)] == []
            assert await _networks_of(docker, [c.id for c in results]) == {older.id}
        finally:
            await asyncio.gather(*(b.close() for b in backends))
    finally:
        await squatter.delete(force=True)
