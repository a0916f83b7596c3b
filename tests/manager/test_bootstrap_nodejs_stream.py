"""Streamed answers of the Node.js bootstrap beyond the stream contract every runtime passes
(test_bootstrap_stream.py): a Node Readable as the handler's answer, and Lambda's
``awslambda.streamifyResponse`` as AWS's examples write it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.manager.bootstraps import Bootstrap, app_files, init, init_body, make_zip
from tests.manager.frames import LOCAL, items, run_stream, summary

pytestmark = pytest.mark.integration


def test_a_readable_streams_its_chunks(start_node):
    bootstrap = start_node()
    conn = bootstrap.connect()
    assert init(conn, init_body("gens.dispatch", "nodejs"))[0] == 200
    frames = run_stream(LOCAL, bootstrap.port, "readable")

    assert [kind for kind, _ in frames] == ["D", "D", "E"]
    assert items(frames) == [b"r1", b"r2"]
    assert summary(frames)["status"] == "success"


@pytest.fixture
def streamified(start_node: Callable[[], Bootstrap]) -> Bootstrap:
    bootstrap = start_node()
    conn = bootstrap.connect()
    zipped = make_zip({"streamified.mjs": app_files("nodejs")["streamified.mjs"]})
    status, body = init(conn, init_body("streamified.handler", "nodejs", code_zip_b64=zipped))
    assert status == 200, body
    conn.close()
    return bootstrap


@pytest.mark.parametrize(
    ("mode", "head", "expected"),
    [
        ("plain", None, b"Hello, world!"),
        ("web", {"statusCode": 201, "headers": {"X-Kind": "streamified"}}, b"Hello, world!"),
        ("type", {"statusCode": 200, "headers": {"Content-Type": "text/plain"}}, b"Hello, world!"),
        ("pipeline", None, b"one two req-s"),
    ],
)
def test_awslambda_streamify_response_streams_what_the_handler_writes(
    streamified, mode, head, expected
):
    frames = run_stream(LOCAL, streamified.port, mode, headers={"X-Hotpool-Request-Id": "req-s"})

    assert summary(frames)["status"] == "success"
    if head is None:
        assert frames[0][0] != "H"
    else:
        assert (frames[0][0], json.loads(frames[0][1])) == ("H", head)
    # what was written, in order (writes that wait in the stream together are one item)
    assert b"".join(items(frames)) == expected


def test_a_streamified_handler_that_throws_ends_in_an_error_summary(streamified):
    frames = run_stream(LOCAL, streamified.port, "fail")

    assert b"".join(items(frames)) == b"Hello, world!"
    error = summary(frames)["error"]
    assert (error["type"], error["message"]) == ("TypeError", "broke mid-stream")
