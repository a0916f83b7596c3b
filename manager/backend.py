"""The ``ContainerBackend`` port: how a Manager starts and removes function containers.

A backend starts *generic* containers: the runtime bootstrap listening on ``address`` with no
function code. The Manager then loads the code through the bootstrap's ``/init``. The process
backend and the Docker backend implement this same interface and pass the same contract tests.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class ContainerState(Enum):
    """Where a container is in its life, as its Manager sees it."""

    STARTING = "starting"  # the backend is creating it
    GENERIC = "generic"  # the bootstrap answers; no code loaded (pre-warmed)
    INITIALISING = "initialising"  # /init with the function's code is under way
    READY = "ready"  # specialised: in a pool list or leased
    REMOVING = "removing"  # on its way out; never handed out again


# the transitions a container may take; anything else is a bug, which
# manager.containers.Record.move (the only way a state changes) refuses
TRANSITIONS: dict[ContainerState, frozenset[ContainerState]] = {
    ContainerState.STARTING: frozenset({ContainerState.GENERIC, ContainerState.REMOVING}),
    ContainerState.GENERIC: frozenset({ContainerState.INITIALISING, ContainerState.REMOVING}),
    ContainerState.INITIALISING: frozenset({ContainerState.READY, ContainerState.REMOVING}),
    ContainerState.READY: frozenset({ContainerState.REMOVING}),
    ContainerState.REMOVING: frozenset(),
}


def can_transition(current: ContainerState, new: ContainerState) -> bool:
    return new in TRANSITIONS[current]


@dataclass(frozen=True)
class ImageRun:
    """A container-image function's own container: the pinned image and how to run it."""

    image_id: str  # sha256:..., pinned at deploy
    entrypoint: tuple[str, ...] = ()  # () = the image's own
    command: tuple[str, ...] = ()
    workdir: str = ""
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerSpec:
    """What to start: a generic container of one runtime with a memory limit; with ``image``,
    the relay of a container-image function and that function's container beside it."""

    runtime: str
    memory_mb: int
    labels: Mapping[str, str] = field(default_factory=dict)
    image: ImageRun | None = None


@dataclass(frozen=True)
class Container:
    """A started container whose bootstrap answers at ``address`` (host:port) to requests
    carrying ``secret`` (header ``CONTAINER_SECRET_HEADER``)."""

    id: str
    address: str
    runtime: str
    memory_mb: int
    started_at: float
    secret: str = field(default="", repr=False)


def new_container_secret() -> str:
    """A fresh random secret for one container; the backend hands it to the bootstrap on
    stdin (never in the environment: see the bootstrap's ``__main__``)."""
    # URL-safe base64: never the "|" that separates a pool entry's fields
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ExitStatus:
    """How a container ended, when it ended on its own."""

    exit_code: int | None
    oom_killed: bool = False
    # the container's memory limit, filled in by the Manager so the message can name it
    memory_mb: int | None = None

    def describe(self, memory_mb: int | None = None) -> tuple[str, str]:
        """(error type, message) of the function error this exit means for the caller."""
        memory_mb = memory_mb or self.memory_mb
        if self.oom_killed:
            limit = f" of {memory_mb} MB" if memory_mb else ""
            return "OutOfMemory", f"the function exceeded its memory limit{limit} and was killed"
        code = self.exit_code
        if code is not None and code < 0:
            return "RuntimeExited", f"the function's runtime was killed by signal {-code}"
        if code is not None and code >= 128:
            return "RuntimeExited", f"the function's runtime was killed by signal {code - 128}"
        return "RuntimeExited", f"the function's runtime exited with code {code}"


ExitListener = Callable[[str], Awaitable[None]]


class ContainerBackend(Protocol):
    """Starts and removes containers on one node."""

    name: str

    async def start(self, spec: ContainerSpec) -> Container:
        """Start a container and return once its bootstrap answers; raise ContainerFailed."""
        ...

    async def remove(self, container_id: str) -> None:
        """Kill and delete a container; removing an unknown or dead one is not an error."""
        ...

    async def alive(self, container_id: str) -> bool: ...

    async def exit_status(self, container_id: str, wait_s: float = 0.0) -> ExitStatus | None:
        """How the container ended, waiting up to ``wait_s`` for it to end; None if running."""
        ...

    async def set_memory(self, container_id: str, memory_mb: int) -> None:
        """Change a running container's memory limit (a pre-warmed one, when specialised)."""
        ...

    async def healthy(self) -> bool:
        """Whether the backend can start containers now (the Docker daemon answers)."""
        ...

    async def list_ids(self) -> set[str]:
        """Ids of the live containers this backend started."""
        ...

    def on_exit(self, listener: ExitListener) -> None:
        """Call ``listener(container_id)`` when a container dies on its own."""
        ...

    async def close(self) -> None:
        """Remove every container and release resources."""
        ...
