"""Tests for the in-container bootstrap, run as a real subprocess over real HTTP."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import io
import json
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hotpool.manager.runtimes import PYTHON_BOOTSTRAP as BOOTSTRAP_PATH

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 10.0
# what the backends write to a bootstrap's stdin, and Main and the Manager present on each call
SECRET = "test-container-secret-5c0e7f"
SECRET_HEADER = "X-Hotpool-Container-Secret"
SECRET_LINE = f"{SECRET_HEADER}: {SECRET}\r\n".encode()

APP_SOURCE = textwrap.dedent(
    """
    import asyncio
    import logging
    import os
    import sys
    import time

    # As on Lambda, basicConfig does nothing (the root logger has the runtime's handler) and
    # the level must be set on the root logger; log lines reach each invocation's stdout.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger().setLevel(logging.INFO)
    NOT_CALLABLE = 42

    def echo(event, context):
        return event

    def transform(event, context):
        return {"doubled": event["n"] * 2, "seen": event}

    def decimals(event, context):
        # what a DynamoDB read returns: awslambdaric encodes Decimals as numbers
        from decimal import Decimal
        return {"count": Decimal("42"), "price": Decimal("9.5")}

    async def async_handler(event, context):
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        return {"n": event["n"] + 1, "loop_id": id(loop)}

    def fail(event, context):
        raise ValueError(f"bad input {event['n']}")

    def exit_handler(event, context):
        raise SystemExit(3)

    def noisy(event, context):
        print("to stdout")
        print("to stderr", file=sys.stderr)
        logging.getLogger("app").info("logged line")
        return "quiet"

    def flood(event, context):
        print("x" * event["size"])
        return "flooded"

    def context_info(event, context):
        before = context.get_remaining_time_in_millis()
        time.sleep(0.05)
        return {
            "before": before,
            "after": context.get_remaining_time_in_millis(),
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "identity": {
                "cognito_identity_id": context.identity.cognito_identity_id,
                "cognito_identity_pool_id": context.identity.cognito_identity_pool_id,
            },
            "client_context": context.client_context,
        }

    def wait_for_file(event, context):
        deadline = time.monotonic() + 5
        while not os.path.exists(event["path"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "released"

    def not_serializable(event, context):
        return {"values": {1, 2}}

    def read_env(event, context):
        return os.environ.get("GREETING")

    def lambda_env(event, context):
        names = ("AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME", "TZ", "LAMBDA_TASK_ROOT")
        return {name: os.environ.get(name) for name in names} | {"tz": time.tzname[0]}

    def sync_loop_id(event, context):
        return id(asyncio.get_event_loop())
    """
)
LEAN_SOURCE = textwrap.dedent(
    """
    import sys

    HEAVY = (
        "asyncio", "http.server", "email", "typing", "inspect", "dataclasses", "argparse",
        "logging",  # the runtime's log handler waits for the function to import it
    )

    def heavy_modules(event, context):
        return [name for name in HEAVY if name in sys.modules]
    """
)
BROKEN_SOURCE = textwrap.dedent(
    """
    print("booting")

    class BootError(Exception):
        pass

    raise BootError("cannot start")
    """
)


@dataclasses.dataclass
class Bootstrap:
    """One running bootstrap process and where it keeps its files."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    code_dir: Path

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


def init_body(handler: str = "app.echo", **overrides: Any) -> dict[str, Any]:
    body = {
        "function_name": "fn",
        "function_version": 7,
        "handler": handler,
        "memory_mb": 256,
        "timeout_s": 30,
        "env": {"GREETING": "hello"},
        "code_zip_b64": make_zip(
            {"app.py": APP_SOURCE, "broken.py": BROKEN_SOURCE, "lean.py": LEAN_SOURCE}
        ),
    }
    return body | overrides


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


def _wait_for_port(process: subprocess.Popen[bytes], port_file: Path, log: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        if process.poll() is not None:
            pytest.fail(f"bootstrap exited with {process.returncode}: {log.read_text()}")
        time.sleep(0.01)
    pytest.fail(f"bootstrap wrote no port file within {START_TIMEOUT_S}s")


@pytest.fixture
def start_bootstrap(tmp_path: Path) -> Iterator[Callable[..., Bootstrap]]:
    """Factory starting bootstrap subprocesses, ``start(opt_dir=True)`` with an opt directory
    for layers as the process backend gives; every one is killed at teardown."""
    started: list[Bootstrap] = []

    def start(*, opt_dir: bool = False) -> Bootstrap:
        workdir = tmp_path / f"bootstrap{len(started)}"
        workdir.mkdir()
        port_file, log = workdir / "port", workdir / "stderr.log"
        # the flags the process backend and the Docker image use: no site-packages
        command = [sys.executable, "-I", "-S", "-u", "-B", str(BOOTSTRAP_PATH)]
        command += ["--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
        command += ["--code-dir", str(workdir / "code")]
        if opt_dir:
            command += ["--opt-dir", str(workdir / "opt")]
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr
            )
        assert process.stdin is not None
        process.stdin.write(f"{SECRET}\n".encode())
        process.stdin.close()
        port = _wait_for_port(process, port_file, log)
        started.append(Bootstrap(process, port, workdir, workdir / "code"))
        return started[-1]

    yield start
    for bootstrap in started:
        if bootstrap.process.poll() is None:
            bootstrap.process.kill()
        bootstrap.process.wait(timeout=5)


@pytest.fixture
def app(
    start_bootstrap: Callable[[], Bootstrap],
) -> Iterator[tuple[Bootstrap, http.client.HTTPConnection]]:
    """A bootstrap initialised with app.echo, plus a connection to it."""
    bootstrap = start_bootstrap()
    conn = bootstrap.connect()
    status, _ = init(conn, init_body())
    assert status == 200
    yield bootstrap, conn
    conn.close()


def with_handler(start_bootstrap: Callable[[], Bootstrap], handler: str, **overrides: Any):
    bootstrap = start_bootstrap()
    conn = bootstrap.connect()
    status, body = init(conn, init_body(handler, **overrides))
    assert status == 200, body
    return bootstrap, conn


def test_ready_line_and_healthz_before_and_after_init(start_bootstrap):
    bootstrap = start_bootstrap()
    conn = bootstrap.connect()

    status, health = call(conn, "GET", "/healthz")
    assert status == 200
    assert health == {
        "status": "ok",
        "initialized": False,
        "busy": False,
        "function_name": None,
        "function_version": None,
    }
    status, body = init(conn, init_body())
    assert status == 200
    assert body["init_ms"] > 0
    status, health = call(conn, "GET", "/healthz")
    assert (health["initialized"], health["function_name"], health["function_version"]) == (
        True,
        "fn",
        7,
    )
    stderr = (bootstrap.workdir / "stderr.log").read_text()
    assert f"HOTPOOL_READY port={bootstrap.port}" in stderr


def test_keep_alive_serves_many_requests_on_one_socket(app):
    _, conn = app
    invoke(conn, {"n": 0})
    sock = conn.sock
    for n in range(5):
        status, body = invoke(conn, {"n": n})
        assert (status, body["result"]) == (200, {"n": n})
        call(conn, "GET", "/healthz")
    assert sock is not None and conn.sock is sock


def test_init_missing_module_is_422(start_bootstrap):
    conn = start_bootstrap().connect()
    status, body = init(conn, init_body("nowhere.handler"))
    assert status == 422
    assert body["error"]["type"] == "ModuleNotFoundError"
    assert "nowhere" in body["error"]["message"]
    assert "Traceback" in body["error"]["traceback"]
    assert call(conn, "GET", "/healthz")[1]["initialized"] is False


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [("app.missing", "HandlerNotFound"), ("app.NOT_CALLABLE", "HandlerNotCallable")],
)
def test_init_unusable_handler_is_422(start_bootstrap, handler, error_type):
    conn = start_bootstrap().connect()
    status, body = init(conn, init_body(handler))
    assert (status, body["error"]["type"]) == (422, error_type)
    assert call(conn, "GET", "/healthz")[1]["initialized"] is False


def test_init_module_raising_reports_user_exception_and_stays_uninitialised(start_bootstrap):
    conn = start_bootstrap().connect()
    status, body = init(conn, init_body("broken.handler"))
    assert status == 422
    assert body["error"]["type"] == "BootError"
    assert body["error"]["message"] == "cannot start"
    assert 'raise BootError("cannot start")' in body["error"]["traceback"]
    assert body["stdout"] == "booting\n"
    assert call(conn, "POST", "/invoke", b"{}")[0] == 503
    assert init(conn, init_body())[0] == 200  # a later good init still works


@pytest.mark.parametrize(
    "change",
    [
        {"handler": "no_dot"},
        {"function_version": "7"},
        {"env": {"A": 1}},
        {"code_zip_b64": "not base64 zip!"},
        {"timeout_s": -1},
    ],
)
def test_init_malformed_request_is_400(start_bootstrap, change):
    conn = start_bootstrap().connect()
    status, body = init(conn, init_body() | change)
    assert (status, set(body["error"])) == (400, {"type", "message"})
    assert call(conn, "POST", "/init", b"[not json")[0] == 400


def test_double_init_is_409(app):
    _, conn = app
    status, body = init(conn, init_body())
    assert (status, body["error"]["type"]) == (409, "AlreadyInitialized")


def test_zip_entry_escaping_code_dir_is_refused(start_bootstrap):
    bootstrap = start_bootstrap()
    conn = bootstrap.connect()
    evil = make_zip({"app.py": APP_SOURCE, "../evil.py": "PWNED = 1"})
    status, body = init(conn, init_body(code_zip_b64=evil))
    assert status == 400
    assert "evil.py" in body["error"]["message"]
    assert not (bootstrap.workdir / "evil.py").exists()
    assert not bootstrap.code_dir.exists() or not any(bootstrap.code_dir.iterdir())


def test_invoke_sync_handler_transforms_event(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.transform")
    status, body = invoke(conn, {"n": 21}, {"X-Hotpool-Request-Id": "r1"})
    assert status == 200
    assert body["status"] == "success"
    assert body["result"] == {"doubled": 42, "seen": {"n": 21}}
    assert body["duration_ms"] >= 0
    assert body["peak_memory_mb"] > 1


def test_decimals_come_back_as_numbers_as_lambdas_encoder_gives_them(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.decimals")
    status, body = invoke(conn, {})
    assert (status, body["status"]) == (200, "success")
    assert body["result"] == {"count": 42, "price": 9.5}


def test_invoke_empty_body_is_null_event(app):
    _, conn = app
    assert call(conn, "POST", "/invoke", b"")[1]["result"] is None


def test_async_handler_runs_on_one_persistent_loop(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.async_handler")
    first = invoke(conn, {"n": 1})[1]
    second = invoke(conn, {"n": 2})[1]
    assert (first["result"]["n"], second["result"]["n"]) == (2, 3)
    assert first["result"]["loop_id"] == second["result"]["loop_id"]


def test_handler_exception_is_reported_as_error(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.fail")
    status, body = invoke(conn, {"n": 5})
    assert (status, body["status"]) == (200, "error")
    assert body["error"]["type"] == "ValueError"
    assert body["error"]["message"] == "bad input 5"
    assert "in fail" in body["error"]["traceback"]
    assert "hotpool_runtime" not in body["error"]["traceback"]  # the runtime's frames cut
    assert "result" not in body


def test_system_exit_from_handler_does_not_stop_the_server(start_bootstrap):
    bootstrap, conn = with_handler(start_bootstrap, "app.exit_handler")
    body = invoke(conn, None)[1]
    assert (body["status"], body["error"]["type"]) == ("error", "SystemExit")
    assert call(conn, "GET", "/healthz")[0] == 200
    assert bootstrap.process.poll() is None


def test_output_is_captured_and_kept_out_of_result(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.noisy")
    for request_id in ("req-1", "req-2"):
        body = invoke(conn, None, {"X-Hotpool-Request-Id": request_id})[1]
        assert body["result"] == "quiet"
        assert body["stderr"] == "to stderr\n"
        assert re.fullmatch(
            rf"to stdout\n\[INFO\]\t\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\t{request_id}\t"
            r"logged line\n",
            body["stdout"],
        ), body["stdout"]


def test_output_is_truncated_at_log_limit(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.flood", log_limit_bytes=100)
    body = invoke(conn, {"size": 1000})[1]
    assert body["result"] == "flooded"
    assert body["stdout"] == "x" * 100 + "\n[truncated]"


def test_context_attributes(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.context_info")
    headers = {"X-Hotpool-Request-Id": "req-123", "X-Hotpool-Deadline-Ms": "5000"}
    result = invoke(conn, None, headers)[1]["result"]
    assert 0 < result["after"] < result["before"] <= 5000
    assert result["aws_request_id"] == "req-123"
    assert (result["function_name"], result["function_version"]) == ("fn", "7")
    arn = "arn:hotpool:lambda:us-east-1:000000000000:function:fn:7"
    assert result["invoked_function_arn"] == arn
    assert result["memory_limit_in_mb"] == "256"  # a str, as awslambdaric has it
    assert result["log_group_name"] == "/hotpool/functions/fn"
    assert result["log_stream_name"]
    assert result["identity"] == {"cognito_identity_id": None, "cognito_identity_pool_id": None}
    assert result["client_context"] is None


def test_context_defaults_without_headers(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.context_info", timeout_s=3)
    result = invoke(conn, None)[1]["result"]
    assert uuid.UUID(result["aws_request_id"]).version == 4
    assert 2000 < result["before"] <= 3000


def test_invoke_non_json_body_is_400(app):
    _, conn = app
    status, body = call(conn, "POST", "/invoke", b"{nope")
    assert (status, body["error"]["type"]) == (400, "BadRequest")


def test_invoke_before_init_is_503(start_bootstrap):
    conn = start_bootstrap().connect()
    status, body = invoke(conn, {})
    assert (status, body["error"]["type"]) == (503, "NotInitialized")


def test_second_concurrent_invoke_is_refused_busy(start_bootstrap, tmp_path):
    bootstrap, conn = with_handler(start_bootstrap, "app.wait_for_file")
    release = tmp_path / "release"
    outcome: dict[str, Any] = {}
    first = threading.Thread(target=lambda: outcome.update(r=invoke(conn, {"path": str(release)})))
    first.start()
    probe = bootstrap.connect()
    deadline = time.monotonic() + 5
    while not call(probe, "GET", "/healthz")[1]["busy"]:
        assert time.monotonic() < deadline, "first invocation never started"
        time.sleep(0.01)

    status, body = invoke(probe, {"path": str(release)})
    release.touch()
    first.join(timeout=10)

    assert status == 409
    assert body["error"] == {
        "type": "Busy",
        "message": "container is already running an invocation",
    }
    assert outcome["r"][0] == 200
    assert outcome["r"][1]["result"] == "released"
    assert call(probe, "GET", "/healthz")[1]["busy"] is False


def test_non_serialisable_result_is_an_error(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.not_serializable")
    body = invoke(conn, None)[1]
    assert (body["status"], body["error"]["type"]) == ("error", "Runtime.MarshalError")
    assert body["error"]["message"].startswith("Unable to marshal response: ")


def test_env_vars_are_visible_to_handler(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.read_env")
    assert invoke(conn, None)[1]["result"] == "hello"


def test_reserved_variables_win_over_the_functions_env(start_bootstrap):
    # deploy refuses them; the bootstrap does not rely on it
    env = {"AWS_REGION": "evil-1", "AWS_LAMBDA_FUNCTION_NAME": "evil", "TZ": "Europe/Paris"}
    bootstrap, conn = with_handler(start_bootstrap, "app.lambda_env", env=env, region="ap-south-1")
    result = invoke(conn, None)[1]["result"]
    assert (result["AWS_REGION"], result["AWS_LAMBDA_FUNCTION_NAME"]) == ("ap-south-1", "fn")
    assert (result["TZ"], result["tz"]) == ("Europe/Paris", "CET")  # TZ is the function's to set
    assert result["LAMBDA_TASK_ROOT"] == str(bootstrap.code_dir.resolve())


LINES_SOURCE = textwrap.dedent(
    """
    import logging

    def log_lines(event, context):
        for level in ("debug", "info", "warning"):
            getattr(logging.getLogger("lines"), level)(f"{level} line")
    """
)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, ["[WARNING]"]),  # the root logger at logging's default, as on Lambda
        ({"log_level": "TRACE"}, ["[DEBUG]", "[INFO]", "[WARNING]"]),  # Lambda's TRACE is DEBUG
        ({"env": {"AWS_LAMBDA_LOG_FORMAT": "json"}}, ['{"timestamp"'] * 2),  # INFO and up
    ],
)
def test_log_settings_reach_the_root_logger(start_bootstrap, overrides, expected):
    code = make_zip({"lines.py": LINES_SOURCE})
    _, conn = with_handler(start_bootstrap, "lines.log_lines", code_zip_b64=code, **overrides)
    lines = invoke(conn, None)[1]["stdout"].splitlines()
    assert [line[: len(prefix)] for line, prefix in zip(lines, expected, strict=True)] == expected


def test_unknown_path_404_and_wrong_method_405(app):
    _, conn = app
    assert call(conn, "GET", "/nope")[0] == 404
    status, body = call(conn, "GET", "/invoke")
    assert (status, body["error"]["type"]) == (405, "MethodNotAllowed")
    assert call(conn, "GET", "/healthz")[0] == 200  # connection still usable


def test_oversized_body_is_413(app):
    bootstrap, _ = app
    conn = bootstrap.connect()
    conn.putrequest("POST", "/invoke")
    conn.putheader("Content-Length", str(300 * 1024 * 1024 + 1))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["type"] == "PayloadTooLarge"


def test_sigterm_exits_zero(app):
    bootstrap, conn = app
    call(conn, "GET", "/healthz")  # leave an idle keep-alive connection open
    bootstrap.process.send_signal(signal.SIGTERM)
    assert bootstrap.process.wait(timeout=5) == 0


def test_sync_handler_sees_the_persistent_loop_from_any_connection(start_bootstrap):
    bootstrap, conn = with_handler(start_bootstrap, "app.sync_loop_id")
    other = bootstrap.connect()  # served by another thread
    assert invoke(conn, None)[1]["result"] == invoke(other, None)[1]["result"]


def test_sync_handler_leaves_heavy_modules_unimported(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "lean.heavy_modules")
    assert invoke(conn, None)[1]["result"] == []


# the runtime's own module names, which a function may use for its own modules too
RUNTIME_MODULE_NAMES = sorted(
    p.stem for p in (BOOTSTRAP_PATH / "hotpool_runtime").glob("*.py") if p.stem != "__init__"
)


def test_a_functions_modules_named_like_the_runtimes_are_its_own(start_bootstrap):
    assert {"http11", "invoke", "loader"} <= set(RUNTIME_MODULE_NAMES)
    files = {f"{name}.py": f"WHO = 'user {name}'" for name in RUNTIME_MODULE_NAMES}
    # the handler itself lives in a module named like one of the runtime's
    files["invoke.py"] = textwrap.dedent(
        f"""
        import importlib
        WHO = "user invoke"

        def handler(event, context):
            names = {RUNTIME_MODULE_NAMES!r}
            return [importlib.import_module(name).WHO for name in names]
        """
    )
    bootstrap = start_bootstrap()
    conn = bootstrap.connect()
    assert init(conn, init_body("invoke.handler", code_zip_b64=make_zip(files)))[0] == 200
    for _ in range(2):  # and the runtime goes on serving after the function's imports
        status, body = invoke(conn, None)
        assert (status, body["status"]) == (200, "success"), body
        assert body["result"] == [f"user {name}" for name in RUNTIME_MODULE_NAMES]


def test_a_function_shipping_a_hotpool_runtime_module_cannot_replace_the_runtime(
    start_bootstrap,
):
    files = {
        "hotpool_runtime.py": "raise RuntimeError('imported the function copy')",
        "main.py": "def handler(event, context):\n    raise KeyError(event)\n",
    }
    conn = start_bootstrap().connect()
    status, body = init(conn, init_body("main.handler", code_zip_b64=make_zip(files)))
    assert status == 200, body
    status, body = invoke(conn, "k")
    assert (status, body["status"], body["error"]["type"]) == (200, "error", "KeyError")
    assert "hotpool_runtime" not in body["error"]["traceback"]


def test_no_secret_on_stdin_exits_2(tmp_path):
    command = [sys.executable, "-I", "-S", "-B", str(BOOTSTRAP_PATH), "--code-dir", str(tmp_path)]
    done = subprocess.run(command, input="", capture_output=True, text=True, timeout=10)
    assert done.returncode == 2
    assert "no container secret on stdin" in done.stderr


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


def test_bad_flag_exits_2_with_usage(tmp_path):
    command = [sys.executable, "-I", "-S", "-B", str(BOOTSTRAP_PATH), "--code-dir", str(tmp_path)]
    command += ["--nope"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    assert done.returncode == 2
    assert "unknown flag '--nope'" in done.stderr
    assert "usage:" in done.stderr


# Raw-socket tests: the HTTP framing itself, byte for byte.


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


def test_pipelined_requests_are_answered_in_order(app):
    bootstrap, _ = app
    with raw_connect(bootstrap) as sock:
        events = [{"n": n} for n in range(3)]
        burst = b"".join(raw_request("POST", "/invoke", json.dumps(e).encode()) for e in events)
        sock.sendall(burst + raw_request("GET", "/healthz"))
        *invoked, health = read_responses(sock, 4)
        assert [r.body["result"] for r in invoked] == events
        assert (health.status, health.body["initialized"]) == (200, True)
        assert all(r.headers["connection"] == "keep-alive" for r in [*invoked, health])
        sock.sendall(raw_request("GET", "/healthz"))  # still open
        assert read_responses(sock, 1)[0].status == 200


def test_body_arriving_in_pieces_is_awaited(app):
    bootstrap, _ = app
    body = json.dumps({"text": "x" * 200_000}).encode()
    with raw_connect(bootstrap) as sock:
        request = raw_request("POST", "/invoke", body, Expect="100-continue")
        head_end = request.index(b"\r\n\r\n") + 4
        sock.sendall(request[:head_end])
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(request[head_end : head_end + 1000])
        time.sleep(0.05)
        sock.sendall(request[head_end + 1000 :])
        assert read_responses(sock, 1)[0].body["result"] == {"text": "x" * 200_000}


def test_connection_close_is_honoured(app):
    bootstrap, _ = app
    with raw_connect(bootstrap) as sock:
        sock.sendall(raw_request("GET", "/healthz", Connection="close"))
        (response,) = read_responses(sock, 1)
        assert (response.status, response.headers["connection"]) == (200, "close")
        assert closed_by_server(sock)


@pytest.mark.parametrize(
    ("headers", "kept_open"), [({}, False), ({"Connection": "Keep-Alive"}, True)]
)
def test_http_1_0_closes_unless_asked_to_keep_alive(app, headers, kept_open):
    bootstrap, _ = app
    with raw_connect(bootstrap) as sock:
        sock.sendall(raw_request("GET", "/healthz", version="1.0", **headers))
        (response,) = read_responses(sock, 1)
        assert response.status == 200
        assert response.headers["connection"] == ("keep-alive" if kept_open else "close")
        if kept_open:
            sock.sendall(raw_request("GET", "/healthz", version="1.0", **headers))
            assert read_responses(sock, 1)[0].status == 200
        else:
            assert closed_by_server(sock)


@pytest.mark.parametrize(
    "names",
    [
        ("content-length", "x-hotpool-request-id", "x-hotpool-deadline-ms"),
        ("CONTENT-LENGTH", "X-HOTPOOL-REQUEST-ID", "X-HOTPOOL-DEADLINE-MS"),
        ("Content-Length", "X-Hotpool-Request-Id", "X-Hotpool-Deadline-Ms"),
    ],
)
def test_header_names_are_case_insensitive(start_bootstrap, names):
    bootstrap, _ = with_handler(start_bootstrap, "app.context_info")
    length, request_id, deadline = names
    head = f"POST /invoke HTTP/1.1\r\n{length}: 4\r\n{request_id}: r-7\r\n{deadline}: 900\r\n"
    with raw_connect(bootstrap) as sock:
        sock.sendall(head.encode() + SECRET_LINE + b"\r\nnull")
        result = read_responses(sock, 1)[0].body["result"]
    assert result["aws_request_id"] == "r-7"
    assert 0 < result["after"] < result["before"] <= 900


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
        b"GET  /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\n\r\n",
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
