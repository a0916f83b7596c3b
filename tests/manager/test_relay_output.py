"""An image function's output reaching its relay (``POST /output``, output_intake.py), played
here by the test as the Manager does it (manager/image_output.py): what the image writes lands
in the output of the /init or /invoke under way, nothing between calls, and only a caller with
the container's secret may send it."""

from __future__ import annotations

import socket

import pytest

from hotpool.manager.image_output import frame
from tests.manager.provided_kit import SECRET, SECRET_HEADER, StandIn, init_body, start_relay

pytestmark = pytest.mark.integration


def open_output(port: int, secret: str = SECRET) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    # as asyncio's streams (the Manager's) do: a small frame is not held back for an ACK
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        f"POST /output HTTP/1.1\r\nHost: relay\r\n{SECRET_HEADER}: {secret}\r\n"
        "Connection: Upgrade\r\nUpgrade: hotpool-output\r\nContent-Length: 0\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(4096)
        if not data:
            break
        answer += data
    return sock, answer


def test_what_the_image_writes_is_the_output_of_the_init_or_call_under_way(tmp_path, pool):
    relay = start_relay(tmp_path, "--external")
    try:
        output, answer = open_output(relay.port)
        assert answer.startswith(b"HTTP/1.1 101 "), answer
        output.sendall(frame(1, b"runtime client starting\n"))  # before /init: init's output
        runtime = StandIn(relay.api)
        polled = pool.submit(runtime.next)
        status, init = relay.call("POST", "/init", init_body(None))
        assert status == 200 and init["stdout"] == "runtime client starting\n", init

        invoked = pool.submit(relay.call, "POST", "/invoke", b"{}", {"X-Hotpool-Request-Id": "a"})
        polled.result(timeout=10)
        output.sendall(frame(1, b"out 1\n") + frame(2, b"err 1\n") + frame(1, b"out 2\n"))
        runtime.request("POST", "/invocation/a/response", b'"done"')
        status, call = invoked.result(timeout=10)
        assert status == 200 and call["result"] == "done"
        assert (call["stdout"], call["stderr"]) == ("out 1\nout 2\n", "err 1\n")

        output.sendall(frame(1, b"between calls\n"))  # no call under way: dropped
        polled = pool.submit(runtime.next)
        invoked = pool.submit(relay.call, "POST", "/invoke", b"{}", {"X-Hotpool-Request-Id": "b"})
        polled.result(timeout=10)
        output.sendall(frame(3, b"no such stream\n") + frame(1, b"second\n"))
        runtime.request("POST", "/invocation/b/response", b"2")
        status, call = invoked.result(timeout=10)
        assert (call["stdout"], call["stderr"]) == ("second\n", ""), call
        output.close()
    finally:
        relay.stop()


def test_only_the_containers_secret_opens_it_and_only_on_an_image_relay(tmp_path):
    relay = start_relay(tmp_path / "a", "--external")
    try:
        sock, answer = open_output(relay.port, secret="not-the-secret")
        sock.close()
        assert answer.startswith(b"HTTP/1.1 401 "), answer
    finally:
        relay.stop()
    relay = start_relay(tmp_path / "b")  # a package's bootstrap: its output is its pipes
    try:
        sock, answer = open_output(relay.port)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 404 "), answer
    finally:
        relay.stop()


def test_an_oversized_frame_ends_the_connection_and_not_the_relay(tmp_path):
    relay = start_relay(tmp_path, "--external")
    try:
        sock, _ = open_output(relay.port)
        sock.sendall(bytes((1,)) + (64 * 1024 * 1024).to_bytes(4, "big"))
        assert sock.recv(10) == b""  # closed by the relay
        sock.close()
        assert relay.call("GET", "/healthz")[0] == 200
    finally:
        relay.stop()
