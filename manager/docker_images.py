"""Container-image functions on the Docker backend: a pair of containers that is one
container to everyone else.

- The **relay** is a container of the Python runtime image running the provided relay
  (``--runtime provided --external``): it owns the network namespace (on the function
  network, port 8080 published), reads the container secret from stdin as every runtime
  container does, serves hotpool's /init and /invoke on 8080 and the Lambda Runtime API on
  127.0.0.1:9001. Its id is the container's id in pool entries, leases and the Manager's table.
- The **function** container runs the pinned image's own entrypoint and command, joined to
  the relay's network namespace (``NetworkMode: container:<relay>``), so its runtime interface
  client finds ``AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001`` and nothing else of it is published.
  It carries no secret, and every limit of a runtime container (memory, CPUs, pids, read-only
  root, tmpfs /tmp, no capabilities, no-new-privileges, a non-root user, no IPC).

The relay runs from the Python runtime image, not hotpool/runtime-provided: it needs only
python3 and the bootstrap folder, and every Docker node has that image already (its
pre-warmed Python containers), so an image function adds no image to build per node.

Why a relay container and not the image's Runtime Interface Emulator: the relay keeps every
guarantee of the other runtimes (the secret, one call at a time, Lambda's error shape,
records) and needs nothing in the image, which then runs as on Lambda, where
``AWS_LAMBDA_RUNTIME_API`` is set and AWS's entrypoint skips the emulator. An image whose
entrypoint *is* the emulator (``aws-lambda-rie <runtime command>``) has it stripped: its
arguments are the runtime command.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiodocker

from hotpool.manager.backend import Container, ContainerSpec, ExitStatus, ImageRun
from hotpool.manager.docker_errors import docker_errors
from hotpool.manager.image_output import forward_output
from hotpool.shared.errors import ContainerFailed, NotFound
from hotpool.shared.images import parse_reference, without_emulator

RUNTIME_API_PORT = 9001
RUNTIME_API = f"127.0.0.1:{RUNTIME_API_PORT}"
# the relay's command line in the Python runtime image (deploy/runtimes/python/Dockerfile)
RELAY_ENTRYPOINT = [
    "python3", "-I", "-S", "-u", "-B", "/var/runtime/bootstrap",
    "--host", "0.0.0.0", "--port", "8080", "--code-dir", "/tmp/code", "--opt-dir", "/opt",
    "--runtime", "provided", "--external",
    "--runtime-api-host", "127.0.0.1", "--runtime-api-port", str(RUNTIME_API_PORT),
]  # fmt: skip
# on a function container: the id of its relay, and the Manager both belong to
RELAY_LABEL = "hotpool.relay"
IMAGE_MANAGER_LABEL = "hotpool.image-manager"


async def resolve_image(docker: aiodocker.Docker, reference: str) -> dict[str, Any]:
    """The image a reference names on this daemon: its ID (the pin) and ImageConfig.
    NotFound if the daemon has no image of that name."""
    ref = parse_reference(reference)
    try:
        info = await docker.images.inspect(reference)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            raise NotFound(
                f"image {reference!r} is not on this Docker daemon: build, load or pull it "
                "on the Managers' nodes first (docker image ls)"
            ) from None
        raise ContainerFailed(f"Docker could not inspect image {reference!r}: {exc}") from exc
    # a reference that is the prefix of an image ID resolves too: only a name counts
    names = set(info.get("RepoTags") or ()) | set(info.get("RepoDigests") or ())
    if not names.intersection(ref.names):
        raise NotFound(f"no image is named {reference!r} on this Docker daemon")
    config = info.get("Config") or {}
    return {
        "image_id": info["Id"],
        "entrypoint": list(config.get("Entrypoint") or []),
        "command": list(config.get("Cmd") or []),
        "workdir": config.get("WorkingDir") or "",
    }


def relay_config(runtime_config: dict[str, Any]) -> dict[str, Any]:
    """The relay's create body: a runtime container's, with the relay's command line."""
    config = copy.deepcopy(runtime_config)
    config["Entrypoint"] = RELAY_ENTRYPOINT
    config["Cmd"] = []
    return config


def function_config(
    spec: ContainerSpec, run: ImageRun, relay_id: str, relay_config: dict[str, Any], manager_id: str
) -> dict[str, Any]:
    """The function container's create body: the relay's limits and hardening, its own
    memory, in the relay's network namespace, running the pinned image."""
    host = copy.deepcopy(relay_config["HostConfig"])
    for name in ("PortBindings",):
        host.pop(name, None)
    memory = spec.memory_mb * 1024 * 1024
    host.update(Memory=memory, MemorySwap=memory, NetworkMode=f"container:{relay_id}")
    config: dict[str, Any] = {
        "Image": run.image_id,
        "Labels": {RELAY_LABEL: relay_id, IMAGE_MANAGER_LABEL: manager_id},
        "User": relay_config["User"],
        "Env": [f"{k}={v}" for k, v in {**run.env, "AWS_LAMBDA_RUNTIME_API": RUNTIME_API}.items()],
        "HostConfig": host,
    }
    if run.entrypoint:
        config["Entrypoint"] = without_emulator(run.entrypoint)
    if run.command:
        config["Cmd"] = list(run.command)
    if run.workdir:
        config["WorkingDir"] = run.workdir
    return config


class ImagePairs:
    """The image-function half of ``DockerBackend``: starting a pair, removing a relay's
    function container with it, and ending the pair when the function container ends.
    Mixed into the backend, whose Docker client, configuration and state it uses."""

    docker: aiodocker.Docker
    runtime_label: str
    _manager_id: str
    _relay_memory_mb: int
    _ids: set[str]
    _removing: set[str]
    _companions: dict[str, str]  # relay id -> its function container
    _relay_of: dict[str, str]  # and back
    _function_exits: dict[str, ExitStatus]  # relay id -> how its function container ended
    _forwarders: dict[str, asyncio.Task[None]]  # relay id -> its output's (image_output)

    def container_config(self, spec: ContainerSpec) -> dict[str, Any]: ...  # the backend's

    async def _start(
        self,
        config: dict,
        spec: ContainerSpec,
        then: Callable[[str, str, str], Awaitable[None]] | None = None,
    ) -> Container: ...  # the backend's

    async def _start_image(self, spec: ContainerSpec, run: ImageRun) -> Container:
        """A container-image function: its relay, then its own container beside it
        (manager.docker_images); the relay's id stands for both."""
        base = self.container_config(ContainerSpec("python", self._relay_memory_mb, spec.labels))
        config = relay_config(base)
        config["Labels"][self.runtime_label] = spec.runtime  # the pair's, not the relay's

        async def begin_function(relay_id: str, address: str, secret: str) -> None:
            body = function_config(spec, run, relay_id, config, self._manager_id)
            with docker_errors("Docker could not create the function's container"):
                function = await self.docker.containers.create(body)
            self._companions[relay_id] = function.id
            self._relay_of[function.id] = relay_id
            with docker_errors("Docker could not start the function's container"):
                await function.start()
            self._forwarders[relay_id] = asyncio.create_task(
                forward_output(self.docker, function.id, address, secret)
            )

        return await self._start(config, spec, then=begin_function)

    async def _remove_companions(self, relay_id: str) -> None:
        """An image function's own container goes with its relay. One this process does not
        know (a restarted Manager reconciling) is found by its label."""
        if (forwarder := self._forwarders.pop(relay_id, None)) is not None:
            forwarder.cancel()
        companion = self._companions.pop(relay_id, None)
        if companion is None and relay_id in self._ids:
            return  # a runtime container: it has none
        if companion is not None:
            found = [companion]
        else:
            with docker_errors("could not list an image function's containers"):
                listed = await self.docker.containers.list(
                    all=True, filters=json.dumps({"label": [f"{RELAY_LABEL}={relay_id}"]})
                )
            found = [c.id for c in listed]
        for function_id in found:
            self._relay_of.pop(function_id, None)
            self._removing.add(function_id)
            try:
                with docker_errors("could not remove container", ignore=(404, 409)):
                    await self.docker.containers.container(function_id).delete(force=True)
            finally:
                self._removing.discard(function_id)

    async def _on_function_event(self, function_id: str, action: str, event: dict) -> None:
        """An image function's own container ran out of memory or ended: the pair is over.
        Its relay is killed, and its death (reported as this one's) reaches the listeners."""
        relay_id = self._relay_of[function_id]
        if action == "oom":
            self._function_exits[relay_id] = ExitStatus(137, True)
            return
        if action != "die" or function_id in self._removing or relay_id in self._removing:
            return
        code = int(event.get("Actor", {}).get("Attributes", {}).get("exitCode", -1))
        oom = relay_id in self._function_exits and self._function_exits[relay_id].oom_killed
        self._function_exits[relay_id] = ExitStatus(code, oom)
        with contextlib.suppress(aiodocker.DockerError):
            await self.docker.containers.container(relay_id).kill()
