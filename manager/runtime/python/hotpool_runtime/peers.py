"""Who is at the other end of a loopback TCP connection: one of this process's descendants?

The Runtime API has no secret (a runtime only knows ``AWS_LAMBDA_RUNTIME_API``), and on the
process backend every container shares the host's 127.0.0.1: another tenant's function could
poll this container's /next and take its events, or post answers to its calls. So the relay
serves only connections opened by the runtime it started or what that runtime started (its
descendants, all of them, as the relay is a child subreaper). The kernel says which socket is
the peer (/proc/net/tcp: the entry whose local end is the peer's address and remote end ours,
and its inode) and who holds it (a ``socket:[inode]`` link among /proc/PID/fd). Linux only;
where /proc cannot say, the connection is refused.
"""

from __future__ import annotations

import os
import socket
import sys

from .reaping import descendants


def opened_by_descendant(sock: socket.socket) -> bool:
    """Whether the client end of ``sock`` (an accepted loopback TCP connection) is held by a
    descendant of this process."""
    try:
        inode = _peer_inode(sock)
    except (OSError, ValueError):
        return False
    if inode is None:
        return False
    link = f"socket:[{inode}]"
    for pid in descendants(os.getpid()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # ended meanwhile
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == link:
                    return True
            except OSError:
                continue
    return False


def _peer_inode(sock: socket.socket) -> str | None:
    """The inode of the client's socket: its /proc/net/tcp entry has the peer's address as
    local end and ours as remote end."""
    if sock.family == socket.AF_INET:
        table, width = "/proc/net/tcp", 8
    else:
        table, width = "/proc/net/tcp6", 32
    local = _hex_address(sock.getpeername(), sock.family, width)
    remote = _hex_address(sock.getsockname(), sock.family, width)
    with open(table, encoding="ascii") as f:
        next(f)  # the header line
        for line in f:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return fields[9]
    return None


def _hex_address(address: tuple, family: int, width: int) -> str:
    """An address as /proc/net/tcp writes it: the IP in host byte order (32-bit words), then
    the port, in upper-case hex."""
    raw = socket.inet_pton(family, address[0])
    words = [raw[i : i + 4] for i in range(0, len(raw), 4)]
    ip = "".join(int.from_bytes(word, sys.byteorder).to_bytes(4, "big").hex() for word in words)
    return f"{ip.upper():0>{width}}:{address[1]:04X}"
