"""The Node.js bootstrap's HTTP framing and process contract, byte for byte, as the Python
runtime's (test_bootstrap.py's raw-socket tests): what it refuses, how it closes, its exit
statuses."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from hotpool.manager.runtimes import process_command
from tests.manager.test_bootstrap import (
    SECRET,
    SECRET_HEADER,
    SECRET_LINE,
    call,
    closed_by_server,
    init,
    invoke,
    raw_connect,
    raw_request,
    read_responses,
)
from tests.manager.test_bootstrap_nodejs import init_body

pytestmark = pytest.mark.integration


@pytest.fixture
def app(start_node):
    bootstrap = start_node()
    conn = bootstrap.connect()
    assert init(conn, init_body())[0] == 200
    yield bootstrap, conn
    conn.close()


def node_command(tmp_path, *extra: str) -> list[str]:
    return [*process_command("nodejs", tmp_path), "--code-dir", str(tmp_path), *extra]


def test_no_secret_on_stdin_exits_2(start_node, tmp_path):
    done = subprocess.run(node_command(tmp_path), input="", capture_output=True, text=True,
                          timeout=10)  # fmt: skip
    assert done.returncode == 2
    assert "no container secret on stdin" in done.stderr


def test_bad_flag_exits_2_with_usage(start_node, tmp_path):
    done = subprocess.run(node_command(tmp_path, "--nope"), capture_output=True, text=True,
                          timeout=10)  # fmt: skip
    assert done.returncode == 2
    assert "unknown flag '--nope'" in done.stderr and "usage:" in done.stderr


def test_sigterm_exits_zero(app):
    bootstrap, conn = app
    call(conn, "GET", "/healthz")  # leave an idle keep-alive connection open
    bootstrap.process.send_signal(signal.SIGTERM)
    assert bootstrap.process.wait(timeout=5) == 0


def test_a_request_without_the_secret_is_401_before_its_body_is_read(app):
    bootstrap, conn = app
    for secret in ("", "wrong", SECRET + "x"):
        with raw_connect(bootstrap) as sock:
            # announces a body it never sends: refused on the head alone
            sock.sendall(f"POST /invoke HTTP/1.1\r\n{SECRET_HEADER}: {secret}\r\n".encode())
            sock.sendall(b"Content-Length: 1000\r\n\r\n")
            (response,) = read_responses(sock, 1)
            assert response.status == 401
            assert response.body["error"]["type"] == "Unauthorized"
            assert closed_by_server(sock)
    assert invoke(conn, "still")[1]["result"] == "still"  # the rightful caller is unaffected


def test_oversized_head_is_431_and_closes(app):
    bootstrap, _ = app
    with raw_connect(bootstrap) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        (response,) = read_responses(sock, 1)
        assert response.status == 431
        assert response.body["error"]["type"] == "RequestHeaderFieldsTooLarge"
        assert response.headers["connection"] == "close"
        assert closed_by_server(sock)


@pytest.mark.parametrize(
    "head",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
    ],
)
def test_malformed_head_is_400_and_closes(app, head):
    bootstrap, _ = app
    with raw_connect(bootstrap) as sock:
        sock.sendall(head)
        (response,) = read_responses(sock, 1)
        assert (response.status, response.body["error"]["type"]) == (400, "BadRequest")
        assert closed_by_server(sock)


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        (b"Transfer-Encoding: chunked\r\n", 411),
        (b"Content-Length: abc\r\n", 400),
        (b"Content-Length: -1\r\n", 400),
        (b"Content-Length: 2\r\nContent-Length: 3\r\n", 400),
        (f"Content-Length: {300 * 1024 * 1024 + 1}\r\n".encode(), 413),
    ],
)
def test_body_framing_errors_close_the_connection(app, framing, status):
    bootstrap, _ = app
    with raw_connect(bootstrap) as sock:
        sock.sendall(b"POST /invoke HTTP/1.1\r\n" + SECRET_LINE + framing + b"\r\n{}")
        (response,) = read_responses(sock, 1)
        assert (response.status, response.headers["connection"]) == (status, "close")
        assert closed_by_server(sock)


def test_connection_close_is_honoured_and_a_body_may_arrive_in_pieces(app):
    bootstrap, _ = app
    with raw_connect(bootstrap) as sock:
        body = json.dumps({"n": 1}).encode()
        request = raw_request("POST", "/invoke", body, Connection="close")
        sock.sendall(request[:-4])
        sock.sendall(request[-4:])
        (response,) = read_responses(sock, 1)
        assert response.body["result"] == {"n": 1}
        assert response.headers["connection"] == "close"
        assert closed_by_server(sock)
