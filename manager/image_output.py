"""An image function's output, from Docker to its relay.

An image function's runtime writes to its own container's stdout and stderr, which Docker
holds (manager/docker_images.py). The Manager attaches to that container and sends each piece
to the relay's ``POST /output`` (hotpool_runtime/output_intake.py), which files it under the
call under way, so an image function's records carry its output as every other runtime's do.
One task per pair, for the pair's life; it ends when the container does, or is cancelled when
the pair is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiodocker

from hotpool.shared.models import CONTAINER_SECRET_HEADER

log = logging.getLogger(__name__)

# the intake answers 101 before it reads a frame: nothing is sent to a relay that did not
SWITCHED = b"HTTP/1.1 101 "
connect_timeout_s = 10.0


def frame(stream: int, data: bytes) -> bytes:
    """One piece of output as the intake reads it: stream (1 stdout, 2 stderr), length, bytes."""
    return bytes((stream,)) + len(data).to_bytes(4, "big") + data


async def forward_output(
    docker: aiodocker.Docker, function_id: str, address: str, secret: str
) -> None:
    """Send what container ``function_id`` writes, from its start, to the relay at ``address``
    until the container ends."""
    host, port = address.rsplit(":", 1)
    writer: asyncio.StreamWriter | None = None
    # logs=1: what it wrote before this attached comes first (its json-file log has it)
    stream = docker.containers.container(function_id).attach(stdout=True, stderr=True, logs=True)
    try:
        async with asyncio.timeout(connect_timeout_s):
            reader, writer = await asyncio.open_connection(host, int(port))
            head = (
                f"POST /output HTTP/1.1\r\nHost: relay\r\n{CONTAINER_SECRET_HEADER}: {secret}\r\n"
                "Connection: Upgrade\r\nUpgrade: hotpool-output\r\nContent-Length: 0\r\n\r\n"
            )
            writer.write(head.encode())
            answer = await reader.readuntil(b"\r\n\r\n")
        if not answer.startswith(SWITCHED):
            log.warning("relay of %s refused its output: %r", function_id[:12], answer[:80])
            return
        while (message := await stream.read_out()) is not None:
            writer.write(frame(message.stream, message.data))
            await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, aiodocker.DockerError) as exc:
        # the pair is going (its relay or container ended): its last output goes with it
        log.debug("output of %s no longer forwarded: %r", function_id[:12], exc)
    finally:
        with contextlib.suppress(Exception):
            await stream.close()
        if writer is not None:
            writer.close()
