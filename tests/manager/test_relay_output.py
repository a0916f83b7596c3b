"""An image function's output reaching its relay (``POST /output``, output_intake.py), played
here by the test as the Manager does it (manager/image_output.py): what the image writes lands
in the output of the /init or /invoke under way, and nothing between calls. Callers without
the container's secret, oversized frames and floods: tests/security/test_image_output.py."""

from __future__ import annotations

import time

import pytest

from hotpool.manager.image_output import frame
from tests.manager.provided_kit import StandIn, init_body, open_output, start_relay

pytestmark = pytest.mark.integration


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
        # once the relay has read it, which takes its threads a moment (a line still unread
        # when the next call begins is filed under that call: the README's stated limit)
        time.sleep(0.5)
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
