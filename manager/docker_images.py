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

Why a relay container and not the image's Runtime Interface Emulator: the relay keeps every
guarantee of the other runtimes (the secret, one call at a time, Lambda's error shape,
records) and needs nothing in the image, which then runs as on Lambda, where
``AWS_LAMBDA_RUNTIME_API`` is set and AWS's entrypoint skips the emulator. An image whose
entrypoint *is* the emulator (``aws-lambda-rie <runtime command>``) has it stripped: its
arguments are the runtime command.
"""

from __future__ import annotations

import copy
from typing import Any

import aiodocker

from hotpool.manager.backend import ContainerSpec, ImageRun
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
