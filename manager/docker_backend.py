"""The Docker backend: each container is a hardened Docker container of the runtime image.

The bootstrap listens on port 8080 inside the container, and Main calls it directly: at the
container's own address on the functions' network when Main runs on this host (the advertised
address is a loopback one), else on a host port of the daemon's choosing that Docker publishes
on the advertised address (``HOTPOOL_DOCKER_REACH``). A published port reached from this host
passes through Docker's userland proxy, a process per container and a copy each way.

Code reaches the container through the bootstrap's ``/init`` (an archive in the request body,
unpacked into the tmpfs ``/tmp``): the root filesystem stays read-only and a pre-warmed
container, started before anyone knew which function it would serve, needs no volume or
``docker cp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

from hotpool.manager.backend import (
    Container,
    ContainerSpec,
    ExitListener,
    ExitStatus,
    new_container_secret,
)
from hotpool.manager.docker_errors import BUILD_COMMAND, docker_errors
from hotpool.manager.docker_images import IMAGE_MANAGER_LABEL, ImagePairs, resolve_image
from hotpool.manager.docker_network import FUNCTION_NETWORK, FunctionNetwork
from hotpool.shared.errors import ContainerFailed, RuntimeImageMissing
from hotpool.shared.models import CONTAINER_SECRET_HEADER

log = logging.getLogger(__name__)

BOOTSTRAP_PORT = "8080/tcp"
MANAGER_LABEL = "hotpool.manager"
RUNTIME_LABEL = "hotpool.runtime"
# The bootstrap captures each call's output itself (bounded, into its execution record), so the
# daemon's log only matters for a bootstrap failing at start. It stays readable with `docker
# logs` for that, but capped: a function writing straight to file descriptor 1, or a process it
# left running, bypasses the capture, and an uncapped json-file log filled the disk at 100 MB/s.
# At most max-size x max-file per container.
CONTAINER_LOG = {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}}
ready_poll_interval_s = 0.01
docker_call_timeout_s = 30.0
events_retry_s = 1.0
max_remembered_exits = 1000


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this host's loopback (then Main, which calls it, runs here)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: maybe another machine's
        return False


class DockerBackend(ImagePairs):
    """``ContainerBackend`` on a Docker daemon through aiodocker."""

    name = "docker"
    runtime_label = RUNTIME_LABEL

    def __init__(
        self,
        *,
        manager_id: str,
        images: Mapping[str, str],
        advertise_host: str = "127.0.0.1",
        docker_url: str | None = None,
        cpus: float = 1.0,
        pids_limit: int = 128,
        tmpfs_mb: int = 768,
        create_concurrency: int = 4,
        ready_timeout_s: float = 30.0,
        network: str = FUNCTION_NETWORK,
        relay_memory_mb: int = 64,
        reach: str = "auto",
    ) -> None:
        self._manager_id = manager_id
        # the bridge when Main is on this host: no host port, no userland proxy on each call
        self._bridge = reach == "bridge" or (reach == "auto" and is_loopback(advertise_host))
        self._network = FunctionNetwork(lambda: self.docker, network)
        self._images = dict(images)
        self._host = advertise_host
        self._docker_url = docker_url
        self._cpus = cpus
        self._pids_limit = pids_limit
        self._tmpfs_mb = tmpfs_mb
        self._create_slots = asyncio.Semaphore(create_concurrency)
        self._ready_timeout_s = ready_timeout_s
        self._relay_memory_mb = relay_memory_mb
        # image functions: relay id -> its function container, and back
        self._companions: dict[str, str] = {}
        self._relay_of: dict[str, str] = {}
        self._function_exits: dict[str, ExitStatus] = {}
        self._forwarders: dict[str, asyncio.Task[None]] = {}  # relay id -> its output's
        self._docker: aiodocker.Docker | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ids: set[str] = set()
        self._removing: set[str] = set()
        self._exits: dict[str, ExitStatus] = {}
        self._listeners: list[ExitListener] = []
        self._events_task: asyncio.Task[None] | None = None

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(
                url=self._docker_url,
                timeout=aiohttp.ClientTimeout(total=docker_call_timeout_s, connect=5.0),
            )
        return self._docker

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        return self._http

    def on_exit(self, listener: ExitListener) -> None:
        self._listeners.append(listener)
        if self._events_task is None:
            self._events_task = asyncio.create_task(self._follow_events(), name="docker-events")

    # -- starting ----------------------------------------------------------------------

    def container_config(self, spec: ContainerSpec) -> dict:
        """The create-container body: limits and hardening of every function container."""
        image = self._images.get(spec.runtime)
        if image is None:
            raise RuntimeImageMissing(
                f"no runtime image is configured for {spec.runtime!r}; configure one "
                f"(HOTPOOL_RUNTIME_IMAGE_<RUNTIME>) and build it with {BUILD_COMMAND}"
            )
        memory = spec.memory_mb * 1024 * 1024
        return {
            "Image": image,
            "Labels": {
                MANAGER_LABEL: self._manager_id,
                RUNTIME_LABEL: spec.runtime,
                **{str(k): str(v) for k, v in spec.labels.items()},
            },
            "ExposedPorts": {BOOTSTRAP_PORT: {}},
            # the bootstrap reads its secret from stdin (see _hand_secret); StdinOnce closes
            # stdin once the Manager detaches
            "OpenStdin": True,
            "StdinOnce": True,
            "AttachStdin": True,
            "User": "10001:10001",
            "HostConfig": {
                "PortBindings": self._port_bindings(),
                "Memory": memory,
                "MemorySwap": memory,  # equal to Memory: no swap
                "NanoCpus": int(self._cpus * 1e9),
                "PidsLimit": self._pids_limit,
                "ReadonlyRootfs": True,
                # exec: Docker mounts a tmpfs noexec unless told, and the code and layers are
                # unpacked here; their compiled modules (.so of manylinux wheels: pydantic-core,
                # numpy, ...) must map executable, as in Lambda's /var/task and /opt
                "Tmpfs": {"/tmp": f"rw,exec,nosuid,nodev,size={self._tmpfs_mb}m,mode=1777"},
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "Init": True,  # tini as PID 1 reaps whatever the function leaves behind
                "NetworkMode": self._network.name,
                # a private IPC namespace without /dev/shm: no second writable tmpfs beside /tmp
                # and no shared memory (as on Lambda; the bootstrap needs none)
                "IpcMode": "none",
                "RestartPolicy": {"Name": "no"},
                "LogConfig": CONTAINER_LOG,
            },
        }

    async def start(self, spec: ContainerSpec) -> Container:
        if spec.image is not None:
            return await self._start_image(spec, spec.image)
        return await self._start(self.container_config(spec), spec)

    async def resolve_image(self, reference: str) -> dict:
        """The pinned ID and ImageConfig of the image ``reference`` names on this daemon."""
        return await resolve_image(self.docker, reference)

    async def _start(
        self,
        config: dict,
        spec: ContainerSpec,
        then: Callable[[str, str, str], Awaitable[None]] | None = None,
    ) -> Container:
        network_id = await self._network.id()  # by ID: its name may be ambiguous
        config["HostConfig"]["NetworkMode"] = network_id
        config["NetworkingConfig"] = self._network.endpoints(network_id)
        started = time.time()
        secret = new_container_secret()
        async with self._create_slots:  # a burst of cold starts must not swamp the daemon
            with docker_errors("Docker could not create the container", image=config["Image"]):
                container = await self.docker.containers.create(config)
        self._ids.add(container.id)
        try:
            with docker_errors("Docker could not start the container"):
                await container.start()
                info = await container.show()
            address = self._address(info, network_id)
            if address is None:  # it ended before Docker gave it an address or a port
                ended = await self.exit_status(container.id, wait_s=ready_poll_interval_s * 100)
                raise ContainerFailed(f"container exited while starting: {ended}")
            await self._hand_secret(container, secret)
            await self._wait_ready(container.id, address, secret)
            if then is not None:
                await then(container.id, address, secret)
        except BaseException:
            await self.remove(container.id)
            raise
        return Container(container.id, address, spec.runtime, spec.memory_mb, started, secret)

    def _port_bindings(self) -> dict:
        if self._bridge:
            return {}  # reached on the bridge: nothing published, no proxy process
        return {BOOTSTRAP_PORT: [{"HostIp": self._host, "HostPort": ""}]}

    def _address(self, info: dict, network_id: str) -> str | None:
        """Where Main calls a started container (``docker inspect``'s ``info``): its address
        on the functions' network, or the host port published on the advertised host."""
        settings = info["NetworkSettings"]
        if self._bridge:
            for endpoint in (settings.get("Networks") or {}).values():
                if endpoint.get("NetworkID") == network_id and endpoint.get("IPAddress"):
                    return f"{endpoint['IPAddress']}:{BOOTSTRAP_PORT.split('/')[0]}"
            return None
        published = (settings.get("Ports") or {}).get(BOOTSTRAP_PORT)
        return f"{self._host}:{published[0]['HostPort']}" if published else None

    async def _hand_secret(self, container: DockerContainer, secret: str) -> None:
        """Write the container's secret to its bootstrap's stdin, one line, and detach (which
        closes that stdin). Not the container's Env: Docker's init (PID 1) would keep it in
        /proc/1/environ, readable by the function."""
        try:
            with docker_errors("could not hand the container its secret"):
                stream = container.attach(stdin=True)
                try:
                    await stream.write_in(secret.encode() + b"\n")
                finally:
                    await stream.close()
        except ContainerFailed:
            if await self.exit_status(container.id) is None:
                raise
            # it died first: _wait_ready reports how

    async def _wait_ready(self, container_id: str, address: str, secret: str) -> None:
        deadline = time.monotonic() + self._ready_timeout_s
        polls = 0
        headers = {CONTAINER_SECRET_HEADER: secret}
        while time.monotonic() < deadline:
            try:
                async with self.http.get(f"http://{address}/healthz", headers=headers) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            polls += 1
            # the event stream usually reports a death first; ask the daemon now and then
            # in case nobody follows events or one was missed
            ended = self._exits.get(container_id)
            if ended is None and polls % 20 == 0:
                ended = await self.exit_status(container_id)
            if ended is not None:
                raise ContainerFailed(f"container exited while starting: {ended}")
            await asyncio.sleep(ready_poll_interval_s)
        raise ContainerFailed(f"container did not answer within {self._ready_timeout_s} s")

    # -- running -----------------------------------------------------------------------

    async def set_memory(self, container_id: str, memory_mb: int) -> None:
        memory = memory_mb * 1024 * 1024
        with docker_errors("could not set the container's memory"):
            await self.docker._query_json(
                f"containers/{container_id}/update",
                method="POST",
                data=json.dumps({"Memory": memory, "MemorySwap": memory}),
                headers={"Content-Type": "application/json"},
            )

    async def alive(self, container_id: str) -> bool:
        try:
            info = await self.docker.containers.container(container_id).show()
        except aiodocker.DockerError:
            return False
        return bool(info["State"]["Running"])

    async def exit_status(self, container_id: str, wait_s: float = 0.0) -> ExitStatus | None:
        deadline = time.monotonic() + wait_s
        while True:
            if container_id in self._exits:
                return self._exits[container_id]
            try:
                info = await self.docker.containers.container(container_id).show()
            except aiodocker.DockerError:
                return self._exits.get(container_id)
            state = info["State"]
            if not state["Running"]:
                return ExitStatus(state.get("ExitCode"), bool(state.get("OOMKilled")))
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)

    async def healthy(self) -> bool:
        try:
            await self.docker.version()
        except Exception:
            return False
        return True

    async def list_ids(self) -> set[str]:
        """Containers carrying this Manager's label, running or not, including unknown ones."""
        with docker_errors("could not list this Manager's containers"):
            found = await self.docker.containers.list(
                all=True, filters=json.dumps({"label": [f"{MANAGER_LABEL}={self._manager_id}"]})
            )
        return {c.id for c in found}

    # -- removing ----------------------------------------------------------------------

    async def remove(self, container_id: str) -> None:
        self._removing.add(container_id)
        try:
            # 404: gone already; 409: its removal is already under way
            with docker_errors("could not remove container", ignore=(404, 409)):
                await self.docker.containers.container(container_id).delete(force=True)
            await self._remove_companions(container_id)
        finally:
            self._ids.discard(container_id)
            self._removing.discard(container_id)

    async def close(self) -> None:
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task
        with contextlib.suppress(Exception):
            ids = await self.list_ids()
            await asyncio.gather(*(self.remove(cid) for cid in ids), return_exceptions=True)
        with contextlib.suppress(Exception):  # image functions' containers whose relay is gone
            label = json.dumps({"label": [f"{IMAGE_MANAGER_LABEL}={self._manager_id}"]})
            for leftover in await self.docker.containers.list(all=True, filters=label):
                await leftover.delete(force=True)
        if self._http is not None:
            await self._http.close()
        if self._docker is not None:
            await self._docker.close()

    # -- events ------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        """Follow the daemon's event stream for this Manager's containers, reconnecting."""
        # no label filter: Docker ANDs label filters, and this Manager's containers carry one
        # of two labels (runtime containers and relays; image functions' own): _on_event
        # picks them out
        filters = json.dumps({"type": ["container"], "event": ["die", "oom"]})
        while True:
            try:
                await self._read_events(filters)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Docker event stream lost (%s); reconnecting", exc)
            await asyncio.sleep(events_retry_s)

    async def _read_events(self, filters: str) -> None:
        async with self.docker._query(
            "events", params={"filters": filters}, timeout=aiohttp.ClientTimeout(total=None)
        ) as response:
            async for line in response.content:
                if line.strip():
                    await self._on_event(json.loads(line))

    async def _on_event(self, event: dict) -> None:
        container_id = event.get("id") or event.get("Actor", {}).get("ID", "")
        action = event.get("Action") or event.get("status")
        labels = event.get("Actor", {}).get("Attributes", {})
        if self._manager_id not in (labels.get(MANAGER_LABEL), labels.get(IMAGE_MANAGER_LABEL)):
            return  # another Manager's, or no hotpool container at all
        if container_id in self._relay_of:
            await self._on_function_event(container_id, action, event)
            return
        if action == "oom":
            previous = self._exits.get(container_id)
            self._exits[container_id] = ExitStatus(previous.exit_code if previous else 137, True)
            return
        if action != "die" or container_id in self._removing:
            return
        attributes = event.get("Actor", {}).get("Attributes", {})
        code = int(attributes.get("exitCode", -1))
        oom = container_id in self._exits and self._exits[container_id].oom_killed
        # a relay ended by its function container's end: that one's status is the story
        self._exits[container_id] = self._function_exits.pop(container_id, ExitStatus(code, oom))
        if len(self._exits) > max_remembered_exits:
            self._exits.pop(next(iter(self._exits)))
        self._ids.discard(container_id)
        log.info("container %s died (exit %s, oom %s)", container_id[:12], code, oom)
        for listener in self._listeners:
            try:
                await listener(container_id)
            except Exception:
                log.exception("exit listener failed for %s", container_id)
