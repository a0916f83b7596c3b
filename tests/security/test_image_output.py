"""An image relay's ``POST /output`` (output_intake.py), attacked: the function shares the
relay's network namespace, so it can reach the route the Manager feeds its output through.
Without the container's secret it gets 401; on a package's relay the route does not exist; an
oversized frame costs the sender its connection and a flood costs it its excess, never the
relay or the record's bound."""

from __future__ import annotations

import time

import pytest

from hotpool.manager.image_output import frame
from tests.manager.provided_kit import StandIn, init_body, open_output, start_relay

pytestmark = pytest.mark.integration

LOG_LIMIT_BYTES = 4096


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


def test_a_flood_of_output_is_cut_at_the_records_bound_and_the_next_call_is_clean(tmp_path, pool):
    relay = start_relay(tmp_path, "--external")
    try:
        output, answer = open_output(relay.port)
        assert answer.startswith(b"HTTP/1.1 101 "), answer
        runtime = StandIn(relay.api)
        polled = pool.submit(runtime.next)
        status, _ = relay.call("POST", "/init", init_body(None, log_limit_bytes=LOG_LIMIT_BYTES))
        assert status == 200
        invoked = pool.submit(relay.call, "POST", "/invoke", b"{}", {"X-Hotpool-Request-Id": "a"})
        polled.result(timeout=10)
        flood = frame(1, b"x" * (512 * 1024))
        for _ in range(16):  # 8 MiB, each frame under the intake's 1 MiB bound
            output.sendall(flood)
        runtime.request("POST", "/invocation/a/response", b'"done"')
        status, call = invoked.result(timeout=30)
        assert (status, call["result"]) == (200, "done")
        assert LOG_LIMIT_BYTES <= len(call["stdout"].encode()) <= 2 * LOG_LIMIT_BYTES, len(
            call["stdout"]
        )
        # the next call's record starts empty: the flood's excess was dropped, not queued
        # (once the relay has read the rest of it, which its threads do in a moment)
        time.sleep(1.0)
        polled = pool.submit(runtime.next)
        invoked = pool.submit(relay.call, "POST", "/invoke", b"{}", {"X-Hotpool-Request-Id": "b"})
        polled.result(timeout=10)
        output.sendall(frame(1, b"second\n"))
        runtime.request("POST", "/invocation/b/response", b"2")
        status, call = invoked.result(timeout=10)
        assert (status, call["stdout"]) == (200, "second\n"), call["stdout"][:200]
        output.close()
    finally:
        relay.stop()
