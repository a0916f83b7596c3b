"""Starting a runtime's bootstrap as the process backend does, and speaking to it over HTTP.

One kit for the runtime contract suite (test_bootstrap.py, test_bootstrap_http.py,
test_bootstrap_stream.py) and each runtime's own tests: ``start_bootstrap(runtime)`` runs
``process_command(runtime, ...)`` as a real subprocess with the container secret on its stdin,
and ``init_body(handler, runtime=...)`` carries that runtime's handlers: python_app/ and
nodejs_app/ hold twins under the same names, and ``provided`` is the relay running AWS's own
``awslambdaric`` over the Python handlers.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import http.client
import io
import json
import shutil
import socket
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hotpool.manager.runtimes import process_command

START_TIMEOUT_S = 10.0
# what the backends write to a bootstrap's stdin, and Main and the Manager present on each call
SECRET = "test-container-secret-5c0e7f"
SECRET_HEADER = "X-Hotpool-Container-Secret"
SECRET_LINE = f"{SECRET_HEADER}: {SECRET}\r\n".encode()
# the runtimes with a native bootstrap; ``provided`` joins them for handler-level cases
RUNTIMES = ("python", "nodejs")
WITH_PROVIDED = (*RUNTIMES, "provided")
APP_DIRS = {"python": Path(__file__).parent / "python_app",
            "nodejs": Path(__file__).parent / "nodejs_app"}  # fmt: skip
# a handler file that does not compile, kept out of python_app/ where ruff would refuse it
PYTHON_SYNTAX_ERROR = {"syntax.py": "def handler(event, context):\n    return {{ ;\n"}
# what a bootstrap sees of the test's environment: no PYTHONPATH pointing into the tests
BOOTSTRAP_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclasses.dataclass
class Bootstrap:
    """One running bootstrap process and where it keeps its files."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    code_dir: Path
    runtime: str = "python"

    def connect(self) -> http.client.HTTPConnection:
        return SecretConnection("127.0.0.1", self.port, timeout=10)


class SecretConnection(http.client.HTTPConnection):
    """Presents the container secret on every request, as Main and the Manager do."""

    def putrequest(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        super().putrequest(method, url, *args, **kwargs)
        self.putheader(SECRET_HEADER, SECRET)


def make_zip(files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, source in files.items():
            archive.writestr(name, source)
    return base64.b64encode(buffer.getvalue()).decode()


@functools.cache
def app_files(runtime: str) -> dict[str, str]:
    """The files of ``runtime``'s handler folder, by their path inside it."""
    folder = APP_DIRS[runtime]
    files = {
        str(path.relative_to(folder)): path.read_text()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    return files | (PYTHON_SYNTAX_ERROR if runtime == "python" else {})


@functools.cache
def _code_zip_b64(runtime: str) -> str:
    if runtime == "provided":
        # imported here: it fetches awslambdaric from PyPI (cached) and skips without a network
        from tests.lambda_compat.custom_runtimes import awslambdaric_package

        return base64.b64encode(awslambdaric_package(app_files("python"))).decode()
    return make_zip(app_files(runtime))


def init_body(handler: str = "app.echo", runtime: str = "python", **overrides: Any) -> dict:
    """An /init body for ``runtime`` with its handlers as the code; ``overrides`` win."""
    body = {
        "function_name": "fn",
        "function_version": 7,
        "handler": handler,
        "memory_mb": 256,
        "timeout_s": 30,
        "env": {"GREETING": "hello"},
    }
    body |= overrides
    if "code_zip_b64" not in body:
        body["code_zip_b64"] = _code_zip_b64(runtime)
    return body


def call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    assert response.getheader("Content-Type") == "application/json"
    assert int(response.getheader("Content-Length")) == len(data)
    return response.status, json.loads(data)


def init(conn: http.client.HTTPConnection, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return call(conn, "POST", "/init", json.dumps(body).encode())


def invoke(
    conn: http.client.HTTPConnection, event: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    return call(conn, "POST", "/invoke", json.dumps(event).encode(), headers)


def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH: the Node.js runtime cannot run here (apt-get install nodejs)")
    return node


def wait_for_port(process: subprocess.Popen[bytes], port_file: Path, log: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if port_file.exists() and (text := port_file.read_text()):
            return int(text)
        if process.poll() is not None:
            pytest.fail(f"bootstrap exited with {process.returncode}: {log.read_text()}")
        time.sleep(0.01)
    pytest.fail(f"bootstrap wrote no port file within {START_TIMEOUT_S}s")


@pytest.fixture
def start_bootstrap(tmp_path: Path) -> Iterator[Callable[..., Bootstrap]]:
    """Factory starting bootstrap subprocesses: ``start(runtime="python", opt_dir=False)``,
    with an opt directory for layers as the process backend gives it when asked; every one is
    killed at teardown."""
    started: list[Bootstrap] = []

    def start(runtime: str = "python", *, opt_dir: bool = False) -> Bootstrap:
        if runtime == "nodejs":
            node_or_skip()
        workdir = tmp_path / f"{runtime}{len(started)}"
        workdir.mkdir()
        port_file, log = workdir / "port", workdir / "stderr.log"
        command = process_command(runtime, workdir / "provided")
        command += ["--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
        command += ["--code-dir", str(workdir / "code")]
        if opt_dir:
            command += ["--opt-dir", str(workdir / "opt")]
        env = BOOTSTRAP_ENV | {"HOME": str(workdir)}
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=env
            )
        assert process.stdin is not None
        process.stdin.write(f"{SECRET}\n".encode())
        process.stdin.close()
        port = wait_for_port(process, port_file, log)
        started.append(Bootstrap(process, port, workdir, workdir / "code", runtime))
        return started[-1]

    yield start
    for bootstrap in started:
        if bootstrap.process.poll() is None:
            bootstrap.process.kill()
        bootstrap.process.wait(timeout=5)


@pytest.fixture
def start_node(start_bootstrap: Callable[..., Bootstrap]) -> Callable[..., Bootstrap]:
    """Factory starting Node.js bootstraps (``opt_dir=True``: with an opt directory)."""
    node_or_skip()
    return functools.partial(start_bootstrap, "nodejs")


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    """The runtime a contract case runs on: each native one, and ``provided`` where a case
    asks for it (``parametrize("runtime", WITH_PROVIDED, indirect=True)``)."""
    return request.param


@pytest.fixture
def start_runtime(
    start_bootstrap: Callable[..., Bootstrap], runtime: str
) -> Callable[..., Bootstrap]:
    """Factory starting bootstraps of the case's runtime (``opt_dir=True``: with layers)."""
    return functools.partial(start_bootstrap, runtime)


@pytest.fixture
def echo_app(
    start_runtime: Callable[..., Bootstrap],
) -> Iterator[tuple[Bootstrap, http.client.HTTPConnection]]:
    """A bootstrap of the case's runtime initialised with app.echo, and a connection to it."""
    bootstrap, conn = with_handler(start_runtime, "app.echo")
    yield bootstrap, conn
    conn.close()


def with_handler(
    start: Callable[..., Bootstrap], handler: str, **overrides: Any
) -> tuple[Bootstrap, http.client.HTTPConnection]:
    """A bootstrap from ``start`` initialised with ``handler`` of its runtime's code."""
    bootstrap = start()
    conn = bootstrap.connect()
    status, body = init(conn, init_body(handler, bootstrap.runtime, **overrides))
    assert status == 200, body
    return bootstrap, conn


# Raw sockets: the HTTP framing itself, byte for byte.


@dataclasses.dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: Any


def raw_connect(bootstrap: Bootstrap) -> socket.socket:
    return socket.create_connection(("127.0.0.1", bootstrap.port), timeout=10)


def raw_request(method: str, path: str, body: bytes = b"", version: str = "1.1", **headers: str):
    lines = [f"{method} {path} HTTP/{version}", f"Content-Length: {len(body)}"]
    lines += [f"{SECRET_HEADER}: {SECRET}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_responses(sock: socket.socket, count: int) -> list[RawResponse]:
    """Exactly ``count`` responses, read off the socket by their Content-Length."""
    data, responses = b"", []
    while len(responses) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            status_line, *lines = data[:end].decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
            stop = end + 4 + int(headers["content-length"])
            if len(data) >= stop:
                body = json.loads(data[end + 4 : stop])
                responses.append(RawResponse(int(status_line.split()[1]), headers, body))
                data = data[stop:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(responses)} of {count} responses"
        data += chunk
    assert data == b"", "more bytes than responses"
    return responses


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
