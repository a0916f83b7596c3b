"""Docker failures translated, at one place, into hotpool's errors."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator

import aiodocker
import aiohttp

from hotpool.shared.errors import ContainerFailed, NoCapacity, RuntimeImageMissing

BUILD_COMMAND = "hotpool images build (or deploy/build-images.sh)"
# aiodocker's own status for "could not connect to the daemon" (no HTTP status was ever received)
DAEMON_UNREACHABLE_STATUS = 900


@contextlib.contextmanager
def docker_errors(
    what: str, *, image: str | None = None, ignore: Collection[int] = ()
) -> Iterator[None]:
    """Translate a Docker failure while doing ``what`` into hotpool's errors.

    A daemon that cannot be reached is ``NoCapacity`` (503: its Manager is unhealthy too); a
    404 while creating a container from ``image`` is ``RuntimeImageMissing``; anything else
    the daemon refuses is ``ContainerFailed`` (``"<what>: [status] message"``). A status in
    ``ignore`` means the work is already done, and passes silently.
    """
    try:
        yield
    except aiodocker.DockerError as exc:
        if exc.status in ignore:
            return
        if exc.status == 404 and image is not None:
            raise RuntimeImageMissing(
                f"the runtime image {image!r} is missing; build it with {BUILD_COMMAND}"
            ) from exc
        if exc.status == DAEMON_UNREACHABLE_STATUS:
            raise NoCapacity(f"the Docker daemon is unreachable: {exc.message}") from exc
        raise ContainerFailed(f"{what}: {exc}") from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        # a timeout says nothing itself
        reason = str(exc) or type(exc).__name__
        raise NoCapacity(f"the Docker daemon is unreachable: {reason}") from exc
