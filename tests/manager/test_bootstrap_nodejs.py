"""The Node.js bootstrap (manager/runtime/nodejs/bootstrap.js) against the Python runtime's
contract (test_bootstrap.py): the same routes, answers and errors, with Lambda's Node
semantics where Node differs (module systems, callbacks, console lines, error types)."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.manager.test_bootstrap import (
    SECRET_HEADER,
    call,
    init,
    invoke,
    make_zip,
    raw_connect,
    raw_request,
    read_responses,
)

pytestmark = pytest.mark.integration

# the handlers, in files a Node developer would write (app.js has most cases)
APP_DIR = Path(__file__).parent / "nodejs_app"
FILES = {
    str(path.relative_to(APP_DIR)): path.read_text()
    for path in sorted(APP_DIR.rglob("*"))
    if path.is_file()
}


def init_body(handler: str = "app.echo", **overrides: Any) -> dict[str, Any]:
    body = {
        "function_name": "fn",
        "function_version": 7,
        "handler": handler,
        "memory_mb": 256,
        "timeout_s": 30,
        "env": {"GREETING": "hello"},
        "code_zip_b64": make_zip(FILES),
    }
    return body | overrides


def with_handler(start_node, handler: str, **overrides: Any):
    bootstrap = start_node()
    conn = bootstrap.connect()
    status, body = init(conn, init_body(handler, **overrides))
    assert status == 200, body
    return bootstrap, conn


def test_ready_line_healthz_and_init_output(start_node):
    bootstrap = start_node()
    conn = bootstrap.connect()
    status, health = call(conn, "GET", "/healthz")
    assert (status, health) == (200, {"status": "ok", "initialized": False, "busy": False,
                                      "function_name": None, "function_version": None})  # fmt: skip
    status, body = init(conn, init_body())
    assert status == 200 and body["init_ms"] > 0
    # Lambda's Node format; the request id is "undefined" at init, as on Lambda
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z\tundefined\tINFO\tloading app\n", body["stdout"])
    health = call(conn, "GET", "/healthz")[1]
    assert (health["initialized"], health["function_name"], health["function_version"]) == (
        True, "fn", 7)  # fmt: skip
    assert f"HOTPOOL_READY port={bootstrap.port}" in (bootstrap.workdir / "stderr.log").read_text()


def test_a_request_without_the_secret_is_401(start_node):
    bootstrap = start_node()
    with socket.create_connection(("127.0.0.1", bootstrap.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 401")
    assert b"Unauthorized" in data


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("index.handler", {"index": {"n": 1, "s": "ab"}}),
        ("module-exports.handler", "module.exports"),
        ("src/my-app.handler", "helper in src"),
        ("esm.handler", "esm"),
        ("esm_pkg/app.handler", True),
        ("uses_dep.handler", None),
        ("app.nested.deeper.handler", "nested export"),
    ],
)
def test_handlers_of_every_module_system_load_and_answer(start_node, handler, expected):
    _, conn = with_handler(start_node, handler)
    status, body = invoke(conn, {"n": 1, "s": "ab"})
    assert (status, body["status"]) == (200, "success"), body
    assert body["result"] == (expected if handler != "uses_dep.handler" else "***ab")


@pytest.mark.parametrize(
    ("handler", "error_type", "in_message"),
    [
        ("nowhere.handler", "Runtime.ImportModuleError", "Cannot find module 'nowhere'"),
        ("missing_dep.handler", "Runtime.ImportModuleError", "no-such-package"),
        ("syntax.handler", "Runtime.UserCodeSyntaxError", ""),
        ("app.missing", "Runtime.HandlerNotFound", "app.missing is undefined or not exported"),
        ("app.NOT_CALLABLE", "Runtime.HandlerNotFound", "app.NOT_CALLABLE is not a function"),
        ("broken.handler", "BootError", "cannot start"),
    ],
)
def test_init_failures_are_422_with_lambdas_error_types(
    start_node, handler, error_type, in_message
):
    conn = start_node().connect()
    status, body = init(conn, init_body(handler))
    assert (status, body["error"]["type"]) == (422, error_type), body
    assert in_message in body["error"]["message"]
    assert call(conn, "GET", "/healthz")[1]["initialized"] is False
    assert call(conn, "POST", "/invoke", b"{}")[0] == 503
    if handler == "broken.handler":
        assert body["stdout"].endswith("\tundefined\tINFO\tbooting\n")
        assert "cannot start" in body["error"]["traceback"]
        assert init(conn, init_body())[0] == 200  # a later good init still works


@pytest.mark.parametrize(
    "change",
    [
        {"handler": "no_dot"},
        {"function_version": "7"},
        {"env": {"A": 1}},
        {"code_zip_b64": "not base64 zip!"},
        {"timeout_s": -1},
        {"log_format": "xml"},
    ],
)
def test_init_malformed_request_is_400(start_node, change):
    conn = start_node().connect()
    status, body = init(conn, init_body() | change)
    assert (status, set(body["error"])) == (400, {"type", "message"}), body
    assert call(conn, "POST", "/init", b"[not json")[0] == 400


def test_double_init_is_409_and_zip_escapes_are_refused(start_node):
    bootstrap = start_node()
    conn = bootstrap.connect()
    evil = make_zip({"app.js": FILES["app.js"], "../evil.js": "pwned"})
    status, body = init(conn, init_body(code_zip_b64=evil))
    assert status == 400 and "evil.js" in body["error"]["message"]
    assert not (bootstrap.workdir / "evil.js").exists()
    assert not bootstrap.code_dir.exists() or not any(bootstrap.code_dir.iterdir())
    assert init(conn, init_body())[0] == 200
    assert init(conn, init_body())[1]["error"]["type"] == "AlreadyInitialized"


def test_keep_alive_and_pipelined_requests(start_node):
    bootstrap, conn = with_handler(start_node, "app.echo")
    invoke(conn, {"n": 0})
    sock = conn.sock
    for n in range(3):
        assert invoke(conn, {"n": n})[1]["result"] == {"n": n}
    assert conn.sock is sock
    with raw_connect(bootstrap) as raw:
        events = [{"n": n} for n in range(3)]
        raw.sendall(
            b"".join(raw_request("POST", "/invoke", json.dumps(e).encode()) for e in events)
        )
        assert [r.body["result"] for r in read_responses(raw, 3)] == events


def test_async_callback_and_legacy_handlers(start_node):
    _, conn = with_handler(start_node, "app.transform")
    body = invoke(conn, {"n": 21})[1]
    assert body["result"] == {"doubled": 42, "seen": {"n": 21}}
    assert body["duration_ms"] >= 0 and body["peak_memory_mb"] > 1
    for handler, expected in [("app.callback", {"via": "callback", "n": 3}),
                              ("app.legacy", {"legacy": True}),
                              ("app.syncReturn", None)]:  # fmt: skip
        _, conn = with_handler(start_node, handler)
        assert invoke(conn, {"n": 3})[1]["result"] == expected


def test_the_callback_waits_for_the_event_loop_unless_told_not_to(start_node, tmp_path):
    _, conn = with_handler(start_node, "app.waits")
    marker = tmp_path / "waited"
    assert invoke(conn, {"path": str(marker)})[1]["result"] == "answered"
    assert marker.read_text() == "timer ran"  # the answer came after the timer
    _, conn = with_handler(start_node, "app.noWait")
    marker = tmp_path / "not-waited"
    assert invoke(conn, {"path": str(marker)})[1]["result"] == "answered"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        ("app.fail", "TypeError", "bad input 5"),
        ("app.failString", "string", "plain string"),
        ("app.circular", "Runtime.MarshalError", "Unable to stringify response body"),
        ("app.rejectLater", "Runtime.UnhandledPromiseRejection", "nobody waits"),
    ],
)
def test_errors_in_lambdas_node_shape(start_node, handler, error_type, message):
    _, conn = with_handler(start_node, handler)
    status, body = invoke(conn, {"n": 5})
    assert (status, body["status"], body["error"]["type"]) == (200, "error", error_type), body
    assert message in body["error"]["message"]
    if handler == "app.fail":
        assert body["error"]["stack_trace"][0] == "TypeError: bad input 5"
        assert "app.js" in body["error"]["traceback"]
    # the container serves on
    assert call(conn, "GET", "/healthz")[1]["busy"] is False


def test_console_lines_in_lambdas_text_format_and_raw_writes(start_node):
    _, conn = with_handler(start_node, "app.noisy")
    body = invoke(conn, {}, {"X-Hotpool-Request-Id": "req-1"})[1]
    assert body["result"] == "quiet"
    lines = body["stdout"].split("\n")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z\treq-1\tINFO\tto stdout { a: 1 }", lines[0])
    assert lines[1].endswith("\treq-1\tERROR\tan error line")
    assert lines[2].endswith("\treq-1\tWARN\tmulti\rline")  # one line, as Lambda writes it
    assert lines[3:] == ["raw out", ""]
    assert body["stderr"] == "raw err\n"


def test_console_lines_as_json_with_a_level(start_node):
    _, conn = with_handler(start_node, "app.noisy", log_format="json", log_level="ERROR")
    body = invoke(conn, {}, {"X-Hotpool-Request-Id": "req-2"})[1]
    first, rest = body["stdout"].split("\n", 1)
    line = json.loads(first)
    assert {k: line[k] for k in ("level", "requestId", "message")} == {
        "level": "ERROR", "requestId": "req-2", "message": "an error line"}  # fmt: skip
    assert rest == "raw out\n"  # INFO and WARN lines are below the level


def test_output_is_truncated_at_the_log_limit(start_node):
    _, conn = with_handler(start_node, "app.flood", log_limit_bytes=1000)
    body = invoke(conn, {"size": 5000})[1]
    assert body["stdout"] == "x" * 1000 + "\n[truncated]"


def test_context_fields(start_node):
    _, conn = with_handler(start_node, "app.context")
    headers = {"X-Hotpool-Request-Id": "rid-9", "X-Hotpool-Deadline-Ms": "5000"}
    result = invoke(conn, {}, headers)[1]["result"]
    assert 4000 < result["before"] <= 5000 and result["after"] < result["before"]
    assert result["awsRequestId"] == "rid-9"
    assert (result["functionName"], result["functionVersion"], result["memoryLimitInMB"]) == (
        "fn", "7", "256")  # fmt: skip
    assert result["invokedFunctionArn"] == "arn:hotpool:lambda:us-east-1:000000000000:function:fn:7"
    assert result["logGroupName"] == "/hotpool/functions/fn"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[7\][0-9a-f]{32}", result["logStreamName"])
    assert result["callbackWaitsForEmptyEventLoop"] is True
    assert invoke(conn, {}, {"X-Hotpool-Deadline-Ms": "soon"})[0] == 400


def test_lambda_environment_and_working_directory(start_node):
    bootstrap, conn = with_handler(start_node, "app.env", env={"GREETING": "hello", "TZ": "X"})
    env = invoke(conn, {})[1]["result"]
    major = env["AWS_EXECUTION_ENV"].removeprefix("AWS_Lambda_nodejs").removesuffix(".x")
    assert major.isdigit() and int(major) >= 18
    assert (env["GREETING"], env["AWS_REGION"], env["AWS_LAMBDA_FUNCTION_NAME"]) == (
        "hello", "us-east-1", "fn")  # fmt: skip
    assert env["TZ"] == "X"  # a function may set its own
    assert env["_HANDLER"] == "app.env" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["LAMBDA_TASK_ROOT"] == str(bootstrap.code_dir.resolve())
    assert "/nodejs/node_modules" in env["NODE_PATH"]
    _, conn = with_handler(start_node, "app.cwd")
    assert invoke(conn, {})[1]["result"].endswith("/code")
    # NODE_PATH is not reserved on Lambda: the function's own wins
    _, conn = with_handler(start_node, "app.env", env={"NODE_PATH": "/mine"})
    assert invoke(conn, {})[1]["result"]["NODE_PATH"] == "/mine"


def test_a_second_concurrent_invoke_is_refused_busy(start_node, tmp_path):
    bootstrap, conn = with_handler(start_node, "app.wait")
    release = tmp_path / "release"
    with raw_connect(bootstrap) as first:
        first.sendall(raw_request("POST", "/invoke", json.dumps({"path": str(release)}).encode()))
        deadline = time.monotonic() + 5
        while not call(conn, "GET", "/healthz")[1]["busy"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status, body = invoke(conn, {"path": str(release)})
        assert (status, body["error"]["type"]) == (409, "Busy")
        release.write_text("go")
        assert read_responses(first, 1)[0].body["result"] == "released"


def test_what_a_call_starts_is_killed_when_it_returns(start_node):
    _, conn = with_handler(start_node, "app.spawner")
    pid = invoke(conn, {})[1]["result"]
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        assert time.monotonic() < deadline, "the child of the call still runs"
        time.sleep(0.01)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


def test_layers_are_unpacked_under_opt_and_found_by_require(start_node):
    bootstrap = start_node(opt_dir=True)
    conn = bootstrap.connect()
    layer = make_zip({
        "nodejs/node_modules/from-layer/index.js": "module.exports = 'from the layer';",
    })  # fmt: skip
    code = make_zip({"index.js": "exports.handler = async () => require('from-layer');"})
    status, body = init(conn, init_body("index.handler", code_zip_b64=code, layers_zip_b64=[layer]))
    assert status == 200, body
    assert invoke(conn, {})[1]["result"] == "from the layer"
    assert (bootstrap.workdir / "opt/nodejs/node_modules/from-layer/index.js").exists()


def test_bad_http_is_refused_as_the_python_runtime_refuses_it(start_node):
    bootstrap, _ = with_handler(start_node, "app.echo")
    with raw_connect(bootstrap) as sock:
        sock.sendall(raw_request("POST", "/invoke", b"", **{"Transfer-Encoding": "chunked"}))
        assert read_responses(sock, 1)[0].status == 411
    with raw_connect(bootstrap) as sock:
        sock.sendall(raw_request("GET", "/nowhere") + raw_request("GET", "/invoke"))
        assert [r.status for r in read_responses(sock, 2)] == [404, 405]
    with raw_connect(bootstrap) as sock:
        sock.sendall(raw_request("POST", "/invoke", b"{nope"))
        assert read_responses(sock, 1)[0].status == 400
    assert SECRET_HEADER
