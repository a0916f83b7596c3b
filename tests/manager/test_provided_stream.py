"""A custom runtime's streamed response through the provided relay (``relay_stream``), at the
Runtime API: the test is the runtime (a chunked POST in Lambda's streaming mode, on a raw
socket) and Main (the /invoke answer read frame by frame, as Main reads it)."""

from __future__ import annotations

import base64
import json
import socket
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.manager.provided_kit import (
    FramedInvoke,
    Relay,
    StandIn,
    StreamedPost,
    init_body,
    provided_zip,
    start_relay,
)

pytestmark = pytest.mark.integration

PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"


@pytest.fixture
def relay(external: Relay) -> Relay:
    return external


@pytest.fixture
def runtime(relay: Relay, pool: ThreadPoolExecutor) -> StandIn:
    """The stand-in runtime, its init done and polling for the first event."""
    runtime = StandIn(relay.api)
    polled = pool.submit(runtime.next)
    status, answer = relay.call("POST", "/init", init_body(None))
    assert status == 200, answer
    runtime.pending = polled  # type: ignore[attr-defined]
    return runtime


def invoke(relay: Relay, runtime: StandIn, pool: ThreadPoolExecutor, request_id: str):
    """An /invoke read frame by frame, once the runtime got its event."""
    call = FramedInvoke(relay, b'{"n": 1}', request_id)
    headers, _ = runtime.pending.result(timeout=10)
    assert headers["lambda-runtime-aws-request-id"] == request_id
    return call


def poll_again(runtime: StandIn, pool: ThreadPoolExecutor) -> None:
    """The runtime's next poll of /next, once it is done with the call."""
    runtime.pending = pool.submit(runtime.next)


def test_each_chunk_is_relayed_as_an_item_as_it_comes_and_the_runtime_gets_202(
    relay, runtime, pool
):
    call = invoke(relay, runtime, pool, "s1")
    post = StreamedPost(relay.api, "s1")
    post.write(b"first ")
    # the first item reaches Main while the runtime is still writing: nothing else was sent
    assert call.frame() == b"Dfirst "
    post.write(b"x" * 100_000)  # over a frame: parts, then the item's end
    post.write(b"last")
    assert post.end() == (202, {"status": "OK"})
    poll_again(runtime, pool)
    frames, summary = call.rest()
    assert b"".join(f[1:] for f in frames[:-1]) == b"x" * 100_000
    assert [f[:1] for f in frames[:-1]][-1] == b"D" and frames[0][:1] == b"d"
    assert frames[-1] == b"Dlast"
    assert summary["status"] == "success" and summary["aborted"] is False
    assert summary["bytes"] == 6 + 100_000 + 4 and summary["first_byte_ms"] >= 0
    # the runtime takes the next call, answering it plainly
    second = relay_call(relay, pool, "s2")
    runtime.pending.result(timeout=10)
    assert runtime.request("POST", "/invocation/s2/response", b'"plain"')[0] == 202
    assert second.result(timeout=10)[1]["result"] == "plain"


def relay_call(relay: Relay, pool: ThreadPoolExecutor, request_id: str):
    return pool.submit(relay.call, "POST", "/invoke", b"{}", {"X-Hotpool-Request-Id": request_id})


def test_an_http_integration_prelude_is_the_web_head_split_anywhere(relay, runtime, pool):
    call = invoke(relay, runtime, pool, "p1")
    post = StreamedPost(relay.api, "p1", {"Content-Type": PRELUDE_TYPE})
    prelude = json.dumps({"statusCode": 201, "headers": {"X-Kind": "s"}, "cookies": ["a=1"]})
    post.write(prelude[:10].encode())
    post.write(prelude[10:].encode())
    post.write(b"\0" * 8)
    post.write(b"<p>body</p>")
    assert post.end()[0] == 202
    frames, summary = call.rest()
    head = {"statusCode": 201, "headers": {"X-Kind": "s"}, "cookies": ["a=1"]}
    assert (frames[0][:1], json.loads(frames[0][1:])) == (b"H", head)
    assert frames[1:] == [b"D<p>body</p>"]
    assert summary["bytes"] == len(b"<p>body</p>")


def test_a_content_type_without_a_prelude_is_the_heads_only_header(relay, runtime, pool):
    call = invoke(relay, runtime, pool, "t1")
    post = StreamedPost(relay.api, "t1", {"Content-Type": "text/plain"})
    post.write(b"hello")
    assert post.end()[0] == 202
    frames, _ = call.rest()
    head = {"statusCode": 200, "headers": {"Content-Type": "text/plain"}}
    assert (frames[0][:1], json.loads(frames[0][1:])) == (b"H", head)
    assert frames[1:] == [b"Dhello"]


def test_an_error_in_the_trailers_ends_the_stream_with_that_function_error(relay, runtime, pool):
    call = invoke(relay, runtime, pool, "e1")
    post = StreamedPost(relay.api, "e1")
    post.write(b"partial")
    error = {"errorMessage": "broke mid-stream", "errorType": "TypeError", "stackTrace": ["a"]}
    answer = post.end(
        {
            "Lambda-Runtime-Function-Error-Type": "Handled.TypeError",
            "Lambda-Runtime-Function-Error-Body": base64.b64encode(
                json.dumps(error).encode()
            ).decode(),
        }
    )
    assert answer[0] == 202
    frames, summary = call.rest()
    assert frames == [b"Dpartial"]
    assert summary["status"] == "error"
    assert summary["error"]["type"] == "Handled.TypeError"  # the type trailer wins
    assert (summary["error"]["message"], summary["error"]["stack_trace"]) == (
        "broke mid-stream", ["a"]
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["buffered", "Streaming", "x" * 300])
def test_an_unknown_response_mode_is_refused_400_naming_it_and_fails_the_call(
    relay, runtime, pool, mode
):
    invoked = relay_call(relay, pool, "m1")
    runtime.pending.result(timeout=10)
    status, _, body = runtime.request(
        "POST", "/invocation/m1/response", b'"whole"',
        {"Lambda-Runtime-Function-Response-Mode": mode},
    )  # fmt: skip
    answer = json.loads(body)
    assert (status, answer["errorType"]) == (400, "InvalidFunctionResponseMode")
    assert repr(mode[:100]) in answer["errorMessage"]
    _, outcome = invoked.result(timeout=10)
    assert outcome["error"]["type"] == "Runtime.InvalidResponseModeHeader"


def test_main_leaving_mid_stream_cuts_the_runtimes_post_and_the_next_call_works(
    relay, runtime, pool
):
    call = invoke(relay, runtime, pool, "a1")
    post = StreamedPost(relay.api, "a1")
    post.write(b"one")
    assert call.frame() == b"Done"
    call.sock.shutdown(socket.SHUT_WR)  # Main aborts: its client went away
    # the runtime sees its connection closed: its writes fail
    with pytest.raises(OSError):
        for _ in range(1000):
            post.write(b"more" * 1000)
            time.sleep(0.001)
    poll_again(runtime, pool)
    _, summary = call.rest()
    assert summary["aborted"] is True and summary["bytes"] == 3
    # its late error report is let be; it polls again and the container serves the next call
    assert runtime.request("POST", "/invocation/a1/error", b"{}")[0] == 202
    second = relay_call(relay, pool, "a2")
    runtime.pending.result(timeout=10)
    assert runtime.request("POST", "/invocation/a2/response", b"2")[0] == 202
    assert second.result(timeout=10)[1]["result"] == 2
    assert relay.process.poll() is None


def test_a_runtime_that_does_not_poll_after_its_stream_was_cut_ends_the_container(tmp_path, pool):
    relay = start_relay(tmp_path, "--external")
    try:
        runtime = StandIn(relay.api)
        first = pool.submit(runtime.next)
        assert relay.call("POST", "/init", init_body(None))[0] == 200
        runtime.pending = first  # type: ignore[attr-defined]
        call = FramedInvoke(relay, b"1", "h1")
        first.result(timeout=10)  # and never polls again
        post = StreamedPost(relay.api, "h1")
        post.write(b"one")
        assert call.frame() == b"Done"
        call.sock.shutdown(socket.SHUT_WR)
        _, summary = call.rest()
        assert summary["aborted"] is True
        assert relay.process.wait(timeout=10) == 0  # Main's pool drops it
    finally:
        relay.stop()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"zz\r\n", "malformed chunk size line", id="not-hex"),
        pytest.param(b"f" * 5000, "too long", id="endless-size-line"),
        pytest.param(b"3\r\nabcXY\r\n", "not followed by CRLF", id="no-crlf"),
    ],
)
def test_a_malformed_streamed_body_is_refused_and_the_call_fails_truncated(
    relay, runtime, pool, raw, reason
):
    call = invoke(relay, runtime, pool, "b1")
    post = StreamedPost(relay.api, "b1")
    post.sock.sendall(raw)
    status, answer = post.answer()
    assert status == 400 and reason in answer["errorMessage"]
    poll_again(runtime, pool)
    _, summary = call.rest()
    assert summary["error"]["type"] == "Runtime.TruncatedResponse"
    assert reason in summary["error"]["message"]
    second = relay_call(relay, pool, "b2")
    runtime.pending.result(timeout=10)
    assert runtime.request("POST", "/invocation/b2/response", b"2")[0] == 202
    assert second.result(timeout=10)[1]["result"] == 2


def test_a_runtime_closing_mid_stream_fails_the_call_truncated(relay, runtime, pool):
    call = invoke(relay, runtime, pool, "c1")
    post = StreamedPost(relay.api, "c1")
    post.sock.sendall(b"a\r\nhalf")  # 4 bytes of a chunk of 10
    assert call.frame() == b"dhalf"
    post.sock.close()
    frames, summary = call.rest()
    assert frames == []
    assert summary["error"]["type"] == "Runtime.TruncatedResponse"


def test_the_relay_reads_no_further_than_main_takes(relay, runtime, pool):
    """Back-pressure: with Main not reading, the runtime's writes soon block."""
    call = invoke(relay, runtime, pool, "bp1")
    call.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    post = StreamedPost(relay.api, "bp1")
    post.sock.settimeout(2.0)
    sent = 0
    with pytest.raises(TimeoutError):
        while sent < 256 * 1024 * 1024:
            post.write(b"z" * 65536)
            sent += 65536
    # what the kernel buffers on both sides, and one receive in the relay: megabytes, not more
    assert sent < 32 * 1024 * 1024, sent
    call.sock.close()


# a runtime that starts streaming and dies
DYING = textwrap.dedent(
    f"""\
    #!{sys.executable}
    import os, socket, time
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    head = sock.recv(65536).decode()
    rid = head.lower().split("lambda-runtime-aws-request-id: ")[1].split("\\r\\n")[0]
    post = socket.create_connection((host, int(port)))
    post.sendall(
        f"POST /2018-06-01/runtime/invocation/{{rid}}/response HTTP/1.1\\r\\nHost: x\\r\\n"
        "Lambda-Runtime-Function-Response-Mode: streaming\\r\\n"
        "Transfer-Encoding: chunked\\r\\n\\r\\n3\\r\\none\\r\\n".encode()
    )
    time.sleep(1)  # the relay has taken the stream over (dying sooner fails the call unstreamed)
    os._exit(3)
    """
)


def test_a_runtime_dying_mid_stream_fails_the_call_with_exit_error_and_ends_the_container(
    tmp_path,
):
    relay = start_relay(tmp_path)
    try:
        status, answer = relay.call("POST", "/init", init_body(provided_zip({"bootstrap": DYING})))
        assert status == 200, answer
        call = FramedInvoke(relay, b"1", "d1")
        frames, summary = call.rest()
        assert frames == [b"Done"]
        assert summary["error"]["type"] == "Runtime.ExitError"
        assert summary["error"]["message"].endswith("Runtime exited with error: exit status 3")
        assert relay.process.wait(timeout=10) == 0  # the container ends
    finally:
        relay.stop()


@pytest.mark.parametrize(
    ("parts", "status", "reason"),
    [
        pytest.param([b"[1, 2]" + b"\0" * 8], 400, "not a JSON object", id="not-an-object"),
        pytest.param([b"{oops" + b"\0" * 8], 400, "malformed prelude", id="not-json"),
        pytest.param([b'{"statusCode": NaN}' + b"\0" * 8], 400, "malformed", id="nan"),
        pytest.param([b" " * 40000, b" " * 40000], 400, "no 8 NUL bytes", id="no-delimiter"),
        pytest.param([b'{"statusCode": 200}'], 202, "ended inside its prelude", id="cut-short"),
    ],
)
def test_a_malformed_prelude_fails_the_call_with_invalid_prelude(
    relay, runtime, pool, parts, status, reason
):
    call = invoke(relay, runtime, pool, "pr1")
    post = StreamedPost(relay.api, "pr1", {"Content-Type": PRELUDE_TYPE})
    for part in parts:
        post.write(part)
    answer = post.end() if status == 202 else post.answer()
    assert answer[0] == status
    frames, summary = call.rest()
    assert frames == []  # no head, no body: nothing of it reached Main
    assert summary["error"]["type"] == "Runtime.InvalidPrelude"
    assert reason in summary["error"]["message"]
