"""The bridge every function container joins, where inter-container traffic is off.

A function reaches no other container (another tenant's included), while the host still
reaches each one through its published port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime

import aiodocker
from aiodocker.networks import DockerNetwork

from hotpool.manager.docker_errors import docker_errors
from hotpool.shared.errors import ContainerFailed

log = logging.getLogger(__name__)

FUNCTION_NETWORK = "hotpool-functions"
ICC_OPTION = "com.docker.network.bridge.enable_icc"


class FunctionNetwork:
    """One Manager's handle on the functions' network, found or created once."""

    def __init__(self, docker: Callable[[], aiodocker.Docker], name: str) -> None:
        self.name = name
        self._docker = docker
        self._lock = asyncio.Lock()
        self._id: str | None = None

    async def id(self) -> str:
        """The network's ID: settled once, then remembered."""
        if self._id is None:
            # concurrent first starts (pre-warming and a cold start) share one creation
            async with self._lock:
                if self._id is None:
                    self._id = await self._settle()
        return self._id

    def endpoints(self, network_id: str) -> dict:
        """A created container's NetworkingConfig, joining it to the network ``network_id``."""
        # starting looks the network up by the endpoint's NetworkID, or else by name, which
        # another Manager's duplicate (until it is removed) makes ambiguous
        return {"EndpointsConfig": {self.name: {"NetworkID": network_id}}}

    async def _settle(self) -> str:
        """Find or create the bridge (inter-container traffic off); keep one of duplicates.

        Docker lets two networks share a name, and Managers starting at once on a fresh daemon
        may both create it; a container asking for an ambiguous name then never starts. So
        every Manager keeps the oldest of the networks with that name (all choose the same
        one), removes the others it can (Docker refuses while a container uses one), and
        refers to the network by its ID from then on, when creating and starting containers.
        """
        found = await self._named()
        if not found:
            # 409: another Manager created it first (the daemon's duplicate check is racy,
            # hence the second look)
            with docker_errors(f"could not create the {self.name} network", ignore=(409,)):
                await self._docker().networks.create(
                    {
                        "Name": self.name,
                        "Driver": "bridge",
                        "CheckDuplicate": True,
                        "Options": {ICC_OPTION: "false"},
                        "Labels": {"org.hotpool.network": "functions"},
                    }
                )
            found = await self._named()
        if not found:
            raise ContainerFailed(f"the Docker network {self.name!r} vanished on creation")
        kept, *duplicates = sorted(found, key=_creation_order)
        for duplicate in duplicates:
            with contextlib.suppress(aiodocker.DockerError):
                await DockerNetwork(self._docker(), duplicate["Id"]).delete()
                log.info("removed a duplicate %s network %s", self.name, duplicate["Id"][:12])
        if (kept.get("Options") or {}).get(ICC_OPTION) != "false":
            raise ContainerFailed(
                f"the Docker network {self.name!r} lets containers talk to each other; "
                f"remove it (docker network rm {self.name}) and hotpool recreates it"
            )
        return kept["Id"]

    async def _named(self) -> list[dict]:
        with docker_errors(f"could not list the {self.name} networks"):
            listed = await self._docker().networks.list(filters={"name": [self.name]})
        # the daemon's name filter also matches parts of names
        return [network for network in listed if network.get("Name") == self.name]


_CREATED = re.compile(r"(?P<second>[^.]+?)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)$")


def _creation_order(network: dict) -> tuple[datetime, int, str]:
    """Oldest first, by the daemon's ``Created`` (nanoseconds, trailing zeros trimmed), then ID."""
    created = _CREATED.match(network.get("Created", ""))
    if created is None:
        return datetime.max.replace(tzinfo=UTC), 0, network["Id"]
    zone = created["zone"].replace("Z", "+00:00")
    second = datetime.fromisoformat(created["second"] + zone)
    return second, int((created["fraction"] or "0").ljust(9, "0")), network["Id"]
