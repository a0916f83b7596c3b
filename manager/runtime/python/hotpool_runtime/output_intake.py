"""``POST /output``: a container image's output, as the Manager reads it from Docker.

An image function's runtime runs in a container of its own (manager/docker_images.py), so its
stdout and stderr are not pipes of the relay's: Docker holds them. The Manager attaches to that
container and sends what it writes here, on one connection that switches protocols after its
answer (101): frames of one byte naming the stream (1 stdout, 2 stderr, as Docker's), four
bytes of big-endian length, then the bytes. They go into the two pipes the relay's
``child.ChildOutput`` reads, so each call's capture and its bound are a custom runtime's.
The route asks for the container's secret as every route does: the function, which shares the
relay's network namespace, has none.
"""

from __future__ import annotations

import os
import socket

from . import child
from .config import DEFAULT_LOG_LIMIT_BYTES
from .http11 import StreamingBody

SWITCHED = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: hotpool-output\r\n\r\n"
)
FRAME_HEAD_BYTES = 5
MAX_FRAME_BYTES = 1024 * 1024  # Docker sends what one read of the container's pipe gave


class OutputIntake(StreamingBody):
    """One connection's frames, written to the pipes ``fds`` (stdout, stderr) until it ends."""

    def __init__(self, fds: tuple[int, int]) -> None:
        super().__init__()
        self._fds = {1: fds[0], 2: fds[1]}

    def write(self, sock: socket.socket, keep_alive: bool) -> bool:
        sock.sendall(SWITCHED)
        stream = sock.makefile("rb")
        while True:
            head = stream.read(FRAME_HEAD_BYTES)
            if len(head) < FRAME_HEAD_BYTES:
                return False  # the container ended, or the Manager let go
            size = int.from_bytes(head[1:], "big")
            if size > MAX_FRAME_BYTES:
                return False
            data = stream.read(size)
            fd = self._fds.get(head[0])
            if fd is not None and data:
                os.write(fd, data)  # blocking: ChildOutput reads it at once, past any bound
            if len(data) < size:
                return False


def external_output() -> tuple[child.ChildOutput, tuple[int, int]]:
    """The reader of an image's output and the pipes (stdout, stderr) the intake writes to."""
    (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
    output = child.ChildOutput(
        out_r, err_r, DEFAULT_LOG_LIMIT_BYTES,
        quiet_polls=child.EXTERNAL_QUIET_POLLS, settle_polls=child.EXTERNAL_SETTLE_POLLS,
    )  # fmt: skip
    return output, (out_w, err_w)
