"""The runtime contract: each runtime's bootstrap, run as a real subprocess over real HTTP,
answers /healthz, /init and /invoke alike, with the same handlers (python_app/app.py and
nodejs_app/app.js are twins by name).

Every case runs on the native runtimes (``RUNTIMES``). The handler-level ones (init output,
an event in and a result out, an error in Lambda's shape, the context and its deadline, the
environment, captured and bounded output, one call at a time) also run on ``provided``: the
relay, with AWS's own ``awslambdaric`` running the Python handlers over the Lambda Runtime
API. The rest do not apply to it: its init failures are awslambdaric's own reports, and a
relay whose runtime failed takes no second /init (test_provided_relay.py); its malformed
requests meet the Python runtime's own server; and it cannot kill what a call started when
the call returns, since the runtime it started lives on between calls.

Expectations differ by runtime only where Lambda's runtimes differ (console line format,
error types and messages, the context's names) or where the README says hotpool's Python
runtime differs from Lambda (its init error types). Each runtime's own cases live beside:
test_bootstrap_python.py, test_bootstrap_nodejs.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.manager.bootstraps import (
    WITH_PROVIDED,
    call,
    init,
    init_body,
    invoke,
    make_zip,
    with_handler,
)

pytestmark = pytest.mark.integration

# the handler files' suffix, as tracebacks name them
SUFFIX = {"python": "py", "nodejs": "js", "provided": "py"}
# a line the function logs: Lambda's Node runtime prefixes console lines, Python prints as is
INIT_OUTPUT = {
    "python": "LINE\n",
    "provided": "LINE\n",
    "nodejs": r"\d{4}-\d\d-\d\dT[\d:.]+Z\tundefined\tINFO\tLINE\n",  # no request yet
}
# handler -> runtime -> (error type, part of its message); Python's init failures carry the
# exception's class or HandlerNot* (differences from Lambda the README names), Node's are
# Lambda's own types
INIT_FAILURES = {
    "nowhere.handler": {
        "python": ("ModuleNotFoundError", "No module named 'nowhere'"),
        "nodejs": ("Runtime.ImportModuleError", "Cannot find module 'nowhere'"),
    },
    "missing_dep.handler": {
        "python": ("ModuleNotFoundError", "no_such_package"),
        "nodejs": ("Runtime.ImportModuleError", "no-such-package"),
    },
    "syntax.handler": {
        "python": ("SyntaxError", ""),
        "nodejs": ("Runtime.UserCodeSyntaxError", ""),
    },
    "app.missing": {
        "python": ("HandlerNotFound", "missing"),
        "nodejs": ("Runtime.HandlerNotFound", "app.missing is undefined or not exported"),
    },
    "app.NOT_CALLABLE": {
        "python": ("HandlerNotCallable", "NOT_CALLABLE"),
        "nodejs": ("Runtime.HandlerNotFound", "app.NOT_CALLABLE is not a function"),
    },
    "broken.handler": {
        "python": ("BootError", "cannot start"),
        "nodejs": ("BootError", "cannot start"),
    },
}


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_ready_line_and_healthz_before_and_after_init(start_runtime, runtime):
    bootstrap = start_runtime()
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
    status, body = init(conn, init_body(runtime=runtime))
    assert status == 200
    assert body["init_ms"] > 0
    assert re.fullmatch(INIT_OUTPUT[runtime].replace("LINE", "loading app"), body["stdout"]), body[
        "stdout"
    ]
    status, health = call(conn, "GET", "/healthz")
    assert (health["initialized"], health["function_name"], health["function_version"]) == (
        True,
        "fn",
        7,
    )
    stderr = (bootstrap.workdir / "stderr.log").read_text()
    assert f"HOTPOOL_READY port={bootstrap.port}" in stderr


def test_keep_alive_serves_many_requests_on_one_socket(echo_app):
    _, conn = echo_app
    invoke(conn, {"n": 0})
    sock = conn.sock
    for n in range(5):
        status, body = invoke(conn, {"n": n})
        assert (status, body["result"]) == (200, {"n": n})
        call(conn, "GET", "/healthz")
    assert sock is not None and conn.sock is sock


@pytest.mark.parametrize("handler", list(INIT_FAILURES))
def test_an_init_failure_is_422_and_leaves_the_container_uninitialised(
    start_runtime, runtime, handler
):
    conn = start_runtime().connect()
    status, body = init(conn, init_body(handler, runtime))
    error_type, in_message = INIT_FAILURES[handler][runtime]
    assert (status, body["error"]["type"]) == (422, error_type), body
    assert in_message in body["error"]["message"]
    assert call(conn, "GET", "/healthz")[1]["initialized"] is False
    assert call(conn, "POST", "/invoke", b"{}")[0] == 503
    assert init(conn, init_body(runtime=runtime))[0] == 200  # a later good init still works


def test_a_module_raising_at_init_reports_the_users_exception_and_output(
    start_runtime,
    runtime,
):
    conn = start_runtime().connect()
    status, body = init(conn, init_body("broken.handler", runtime))
    assert (status, body["error"]["message"]) == (422, "cannot start")
    assert "cannot start" in body["error"]["traceback"]
    assert f"broken.{SUFFIX[runtime]}" in body["error"]["traceback"]
    assert re.fullmatch(INIT_OUTPUT[runtime].replace("LINE", "booting"), body["stdout"])


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
def test_init_malformed_request_is_400(start_runtime, runtime, change):
    conn = start_runtime().connect()
    status, body = init(conn, init_body(runtime=runtime) | change)
    assert (status, set(body["error"])) == (400, {"type", "message"}), body
    assert call(conn, "POST", "/init", b"[not json")[0] == 400


def test_double_init_is_409(echo_app):
    bootstrap, conn = echo_app
    status, body = init(conn, init_body(runtime=bootstrap.runtime))
    assert (status, body["error"]["type"]) == (409, "AlreadyInitialized")


def test_zip_entry_escaping_code_dir_is_refused(start_runtime):
    bootstrap = start_runtime()
    conn = bootstrap.connect()
    evil = make_zip({"app.txt": "fine", "../evil.txt": "PWNED = 1"})
    status, body = init(conn, init_body(runtime=bootstrap.runtime, code_zip_b64=evil))
    assert status == 400
    assert "evil.txt" in body["error"]["message"]
    assert not (bootstrap.workdir / "evil.txt").exists()
    assert not bootstrap.code_dir.exists() or not any(bootstrap.code_dir.iterdir())


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_invoke_transforms_the_event(start_runtime):
    _, conn = with_handler(start_runtime, "app.transform")
    status, body = invoke(conn, {"n": 21}, {"X-Hotpool-Request-Id": "r1"})
    assert status == 200
    assert body["status"] == "success"
    assert body["result"] == {"doubled": 42, "seen": {"n": 21}}
    assert body["duration_ms"] >= 0
    assert body["peak_memory_mb"] > 1


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_invoke_empty_body_is_null_event(echo_app):
    _, conn = echo_app
    assert call(conn, "POST", "/invoke", b"")[1]["result"] is None


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_handler_exception_is_reported_as_an_error_in_lambdas_shape(start_runtime, runtime):
    _, conn = with_handler(start_runtime, "app.fail")
    status, body = invoke(conn, {"n": 5})
    assert (status, body["status"]) == (200, "error")
    # each language's own exception: ValueError in Python, TypeError in the Node twin
    assert body["error"]["type"] == ("TypeError" if runtime == "nodejs" else "ValueError")
    assert body["error"]["message"] == "bad input 5"
    assert f"app.{SUFFIX[runtime]}" in body["error"]["traceback"]
    assert "hotpool_runtime" not in body["error"]["traceback"]  # the runtime's frames cut
    assert "result" not in body
    assert call(conn, "GET", "/healthz")[1]["busy"] is False  # and it serves on
    assert invoke(conn, {"n": 6})[1]["error"]["message"] == "bad input 6"


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_output_is_captured_and_kept_out_of_result(start_runtime, runtime):
    _, conn = with_handler(start_runtime, "app.noisy")
    for request_id in ("req-1", "req-2"):
        body = invoke(conn, None, {"X-Hotpool-Request-Id": request_id})[1]
        assert body["result"] == "quiet"
        assert re.fullmatch(NOISY_STDOUT[runtime].replace("RID", request_id), body["stdout"]), body
        assert body["stderr"] == ("raw err\n" if runtime == "nodejs" else "to stderr\n")


STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
# print and logging in Python (as awslambdaric formats a log line); console and raw writes in
# Node, each console line in Lambda's Node format, a multi-line message one line
NOISY_STDOUT = {
    "python": rf"to stdout\n\[INFO\]\t{STAMP}\tRID\tlogged line\n",
    "provided": rf"to stdout\n\[INFO\]\t{STAMP}\tRID\tlogged line\n",
    "nodejs": (
        rf"{STAMP}\tRID\tINFO\tto stdout {{ a: 1 }}\n"
        rf"{STAMP}\tRID\tERROR\tan error line\n"
        rf"{STAMP}\tRID\tWARN\tmulti\rline\nraw out\n"
    ),
}


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_output_is_truncated_at_log_limit(start_runtime):
    _, conn = with_handler(start_runtime, "app.flood", log_limit_bytes=100)
    body = invoke(conn, {"size": 1000})[1]
    assert body["result"] == "flooded"
    assert body["stdout"] == "x" * 100 + "\n[truncated]"


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_context_attributes(start_runtime, runtime):
    _, conn = with_handler(start_runtime, "app.context_info")
    headers = {"X-Hotpool-Request-Id": "req-123", "X-Hotpool-Deadline-Ms": "5000"}
    result = invoke(conn, None, headers)[1]["result"]
    assert 4000 < result["before"] <= 5000 and 0 < result["after"] < result["before"]
    assert result["aws_request_id"] == "req-123"
    assert (result["function_name"], result["function_version"]) == ("fn", "7")
    arn = "arn:hotpool:lambda:us-east-1:000000000000:function:fn:7"
    assert result["invoked_function_arn"] == arn
    assert result["memory_limit_in_mb"] == "256"  # a str, as awslambdaric and Node have it
    assert result["log_group_name"] == "/hotpool/functions/fn"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[7\][0-9a-f]{32}", result["log_stream_name"])
    # Python's context always has an identity; Node's has none outside Cognito calls
    identity = {"cognito_identity_id": None, "cognito_identity_pool_id": None}
    assert result["identity"] == (None if runtime == "nodejs" else identity)
    assert result["client_context"] is None


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_context_defaults_without_headers(start_runtime):
    _, conn = with_handler(start_runtime, "app.context_info", timeout_s=3)
    result = invoke(conn, None)[1]["result"]
    assert uuid.UUID(result["aws_request_id"]).version == 4
    assert 2000 < result["before"] <= 3000


def test_invoke_non_json_body_is_400(echo_app):
    _, conn = echo_app
    status, body = call(conn, "POST", "/invoke", b"{nope")
    assert (status, body["error"]["type"]) == (400, "BadRequest")


def test_a_deadline_that_is_no_number_is_400(echo_app):
    _, conn = echo_app
    status, body = invoke(conn, {}, {"X-Hotpool-Deadline-Ms": "soon"})
    assert (status, body["error"]["type"]) == (400, "BadRequest")


def test_invoke_before_init_is_503(start_runtime):
    conn = start_runtime().connect()
    status, body = invoke(conn, {})
    assert (status, body["error"]["type"]) == (503, "NotInitialized")


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_second_concurrent_invoke_is_refused_busy(start_runtime, tmp_path):
    bootstrap, conn = with_handler(start_runtime, "app.wait_for_file")
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


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_non_serialisable_result_is_a_marshal_error(start_runtime, runtime):
    _, conn = with_handler(start_runtime, "app.not_serializable")
    body = invoke(conn, None)[1]
    assert (body["status"], body["error"]["type"]) == ("error", "Runtime.MarshalError")
    # Lambda's own words differ by runtime (awslambdaric's are the Python runtime's)
    node = runtime == "nodejs"
    expected = "Unable to stringify response body" if node else "Unable to marshal response: "
    assert body["error"]["message"].startswith(expected)


@pytest.mark.parametrize("runtime", WITH_PROVIDED, indirect=True)
def test_env_vars_are_visible_to_handler(start_runtime):
    _, conn = with_handler(start_runtime, "app.read_env")
    assert invoke(conn, None)[1]["result"] == "hello"


def test_lambdas_variables_win_over_the_functions_env_but_tz(start_runtime, runtime):
    # deploy refuses them; the bootstrap does not rely on it
    env = {"AWS_REGION": "evil-1", "AWS_LAMBDA_FUNCTION_NAME": "evil", "TZ": "Europe/Paris",
           "GREETING": "hi"}  # fmt: skip
    bootstrap, conn = with_handler(start_runtime, "app.lambda_env", env=env, region="ap-south-1")
    result = invoke(conn, None)[1]["result"]
    assert (result["AWS_REGION"], result["AWS_LAMBDA_FUNCTION_NAME"]) == ("ap-south-1", "fn")
    assert (result["GREETING"], result["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]) == ("hi", "256")
    assert result["AWS_EXECUTION_ENV"].startswith(f"AWS_Lambda_{runtime}")
    assert result["TZ"] == "Europe/Paris"  # TZ is the function's to set
    # and the language keeps to it: Python names the zone's abbreviation, Node the zone
    assert result["tz"] == {"python": "CET", "nodejs": "Europe/Paris"}[runtime]
    assert result["LAMBDA_TASK_ROOT"] == result["cwd"] == str(bootstrap.code_dir.resolve())


@pytest.mark.parametrize(
    ("settings", "expected"),
    [({}, (None, None)), ({"log_format": "json"}, ("JSON", "INFO")),
     ({"log_format": "json", "log_level": "ERROR"}, ("JSON", "ERROR"))],
)  # fmt: skip
def test_the_json_log_format_comes_with_a_level_as_on_lambda(start_runtime, settings, expected):
    # AWS's runtime clients filter on AWS_LAMBDA_LOG_LEVEL, which Lambda sets beside the format
    _, conn = with_handler(start_runtime, "app.lambda_env", **settings)
    result = invoke(conn, None)[1]["result"]
    # (Node leaves an unset variable out of its JSON)
    assert (result.get("AWS_LAMBDA_LOG_FORMAT"), result.get("AWS_LAMBDA_LOG_LEVEL")) == expected


def test_what_a_call_starts_is_killed_when_it_returns(start_runtime):
    _, conn = with_handler(start_runtime, "app.spawner")
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


def test_unknown_path_404_and_wrong_method_405(echo_app):
    _, conn = echo_app
    assert call(conn, "GET", "/nope")[0] == 404
    status, body = call(conn, "GET", "/invoke")
    assert (status, body["error"]["type"]) == (405, "MethodNotAllowed")
    assert call(conn, "GET", "/healthz")[0] == 200  # connection still usable


def test_oversized_body_is_413(echo_app):
    bootstrap, _ = echo_app
    conn = bootstrap.connect()
    conn.putrequest("POST", "/invoke")
    conn.putheader("Content-Length", str(300 * 1024 * 1024 + 1))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["type"] == "PayloadTooLarge"
