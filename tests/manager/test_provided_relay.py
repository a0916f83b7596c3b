"""The provided relay as a real subprocess: hotpool's /init and /invoke on one side, the Lambda
Runtime API on the other, with the status codes AWS's Runtime Interface Emulator gives.

Most tests run the relay with ``--external`` and play the custom runtime themselves (what the
container-image sidecar does); the rest have it start a package's ``bootstrap``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hotpool.manager.runtimes import PYTHON_BOOTSTRAP
from tests.helpers import free_port
from tests.manager.provided_kit import Relay, StandIn, init_body, provided_zip, start_relay

pytestmark = pytest.mark.integration

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024 + 100


def initialised(relay: Relay, pool: ThreadPoolExecutor) -> StandIn:
    """/init the external relay while a stand-in runtime polls for its first event."""
    runtime = StandIn(relay.api)
    polled = pool.submit(runtime.next)
    status, answer = relay.call("POST", "/init", init_body(None))
    assert (status, answer["stdout"]) == (200, ""), answer
    runtime.pending = polled  # type: ignore[attr-defined]
    return runtime


def test_an_event_reaches_the_runtime_with_lambdas_headers_and_its_response_is_the_result(
    external, pool
):
    runtime = initialised(external, pool)
    invoked = pool.submit(
        external.call, "POST", "/invoke", b'{"n": 1}',
        {"X-Hotpool-Request-Id": "req-1", "X-Hotpool-Deadline-Ms": "5000"},
    )  # fmt: skip
    headers, event = runtime.pending.result(timeout=10)
    assert json.loads(event) == {"n": 1}
    assert headers["lambda-runtime-aws-request-id"] == "req-1"
    assert abs(int(headers["lambda-runtime-deadline-ms"]) - (time.time() * 1000 + 5000)) < 3000
    assert headers["lambda-runtime-invoked-function-arn"].endswith(":function:fn:3")
    assert headers["lambda-runtime-trace-id"].startswith("Root=1-")
    assert headers["content-type"] == "application/json"
    status, _, body = runtime.request("POST", "/invocation/req-1/response", b'{"doubled": 2}')
    assert (status, json.loads(body)) == (202, {"status": "OK"})
    status, answer = invoked.result(timeout=10)
    assert status == 200
    assert (answer["status"], answer["result"]) == ("success", {"doubled": 2})
    assert {"duration_ms", "peak_memory_mb", "stdout", "stderr"} <= answer.keys()


def test_a_posted_error_is_the_calls_function_error_its_type_header_winning(external, pool):
    runtime = initialised(external, pool)
    invoked = pool.submit(external.call, "POST", "/invoke", b"{}", {"X-Hotpool-Request-Id": "r2"})
    runtime.pending.result(timeout=10)
    posted = {"errorMessage": "bad input", "errorType": "FromBody", "stackTrace": ["a.go:3"]}
    status, _, _ = runtime.request(
        "POST", "/invocation/r2/error", json.dumps(posted).encode(),
        {"Lambda-Runtime-Function-Error-Type": "Handled.ValueError"},
    )  # fmt: skip
    assert status == 202
    _, answer = invoked.result(timeout=10)
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "Handled.ValueError"
    assert answer["error"]["message"] == "bad input"
    assert answer["error"]["stack_trace"] == ["a.go:3"]


def test_a_response_for_another_request_id_is_refused_and_a_second_response_too(external, pool):
    runtime = initialised(external, pool)
    invoked = pool.submit(external.call, "POST", "/invoke", b"1", {"X-Hotpool-Request-Id": "mine"})
    runtime.pending.result(timeout=10)
    status, _, body = runtime.request("POST", "/invocation/theirs/response", b"2")
    assert (status, json.loads(body)["errorType"]) == (400, "InvalidRequestID")
    assert runtime.request("POST", "/invocation/mine/response", b"3")[0] == 202
    assert invoked.result(timeout=10)[1]["result"] == 3
    status, _, body = runtime.request("POST", "/invocation/mine/response", b"4")
    assert (status, json.loads(body)["errorType"]) == (403, "InvalidStateTransition")
    status, _, body = runtime.request("POST", "/invocation/mine/error", b"{}")
    assert (status, json.loads(body)["errorType"]) == (403, "InvalidStateTransition")


def test_a_response_over_lambdas_limit_is_refused_and_fails_the_call(external, pool):
    runtime = initialised(external, pool)
    invoked = pool.submit(external.call, "POST", "/invoke", b"1", {"X-Hotpool-Request-Id": "big"})
    runtime.pending.result(timeout=10)
    huge = b'"' + b"x" * MAX_PAYLOAD_BYTES + b'"'
    status, _, body = runtime.request("POST", "/invocation/big/response", huge)
    assert (status, json.loads(body)["errorType"]) == (413, "RequestEntityTooLarge")
    _, answer = invoked.result(timeout=10)
    assert (answer["status"], answer["error"]["type"]) == ("error", "Function.ResponseSizeTooLarge")


def test_a_chunked_response_body_is_read(external, pool):
    runtime = initialised(external, pool)
    invoked = pool.submit(external.call, "POST", "/invoke", b"1", {"X-Hotpool-Request-Id": "ch"})
    runtime.pending.result(timeout=10)
    chunks = iter([b'{"parts": ', b"[1, 2]", b"}"])
    # http.client sends an iterable body of no known length in chunks
    status, _, _ = runtime.request("POST", "/invocation/ch/response", chunks)  # type: ignore[arg-type]
    assert status == 202
    assert invoked.result(timeout=10)[1]["result"] == {"parts": [1, 2]}


def test_a_text_response_that_is_not_json_is_the_result_as_a_string(external, pool):
    runtime = initialised(external, pool)
    invoked = pool.submit(external.call, "POST", "/invoke", b"1", {"X-Hotpool-Request-Id": "t"})
    runtime.pending.result(timeout=10)
    assert runtime.request("POST", "/invocation/t/response", b"Echoing request: 1")[0] == 202
    assert invoked.result(timeout=10)[1]["result"] == "Echoing request: 1"


def test_one_call_at_a_time_a_second_is_busy(external, pool):
    runtime = initialised(external, pool)
    first = pool.submit(external.call, "POST", "/invoke", b"1", {"X-Hotpool-Request-Id": "one"})
    runtime.pending.result(timeout=10)
    status, answer = external.call("POST", "/invoke", b"2")
    assert (status, answer["error"]["type"]) == (409, "Busy")
    runtime.request("POST", "/invocation/one/response", b"1")
    assert first.result(timeout=10)[0] == 200


def test_an_init_error_fails_the_init_with_its_type_and_is_refused_after_init(tmp_path, pool):
    relay = start_relay(tmp_path, "--external")
    try:
        runtime = StandIn(relay.api)
        init = pool.submit(relay.call, "POST", "/init", init_body(None))
        time.sleep(0.1)  # not needed for correctness: either order ends in the same answer
        posted = {"errorMessage": "no module app", "errorType": "Runtime.ImportModuleError"}
        status, _, _ = runtime.request("POST", "/init/error", json.dumps(posted).encode())
        assert status == 202
        status, answer = init.result(timeout=10)
        assert (status, answer["error"]["type"]) == (422, "Runtime.ImportModuleError")
        assert answer["error"]["message"] == "no module app"
    finally:
        relay.stop()
    relay = start_relay(tmp_path / "second", "--external")
    try:
        runtime = initialised(relay, pool)
        status, _, body = runtime.request("POST", "/init/error", b"{}")
        assert (status, json.loads(body)["errorType"]) == (403, "InvalidStateTransition")
    finally:
        relay.stop()


def test_the_runtime_api_port_and_host_are_chosen_by_flags(tmp_path, pool):
    port = free_port()
    relay = start_relay(
        tmp_path, "--external", "--runtime-api-host", "127.0.0.1", "--runtime-api-port", str(port)
    )
    try:
        assert relay.api == f"127.0.0.1:{port}"
        runtime = initialised(relay, pool)  # polls that very port
        assert runtime.request("GET", "/nowhere")[0] == 404
        assert runtime.request("POST", "/invocation/next")[0] == 405
    finally:
        relay.stop()


def test_hotpools_routes_still_demand_the_container_secret(external):
    status, _ = external.call("GET", "/healthz", headers={"X-Hotpool-Container-Secret": "wrong"})
    assert status == 401


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(["--external"], id="external-without-provided"),
        pytest.param(["--runtime", "provided", "--runtime-api-port", "x"], id="bad-api-port"),
        pytest.param(["--runtime", "cobol"], id="unknown-runtime"),
    ],
)
def test_bad_relay_flags_exit_2(tmp_path, flags):
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-u",
            "-B",
            str(PYTHON_BOOTSTRAP),
            "--code-dir",
            str(tmp_path),
            *flags,
        ],
        input=b"secret\n",
        capture_output=True,
        timeout=10,
    )
    assert result.returncode == 2, result.stderr


# --- a bootstrap the relay starts ---------------------------------------------------------------

# a minimal custom runtime in Python: enough to drive the relay's own start-up paths
LOOP = textwrap.dedent(
    f"""\
    #!{sys.executable}
    import http.client, json, os, sys
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
    print("starting", os.environ["_HANDLER"], os.environ["GREETING"], flush=True)
    conn = http.client.HTTPConnection(host, int(port))
    while True:
        conn.request("GET", "/2018-06-01/runtime/invocation/next")
        response = conn.getresponse()
        rid = response.getheader("Lambda-Runtime-Aws-Request-Id")
        event = json.loads(response.read())
        print("got", event, flush=True)
        if event == "die":
            os._exit(7)
        body = json.dumps({{"env": {{k: os.environ.get(k) for k in (
            "LAMBDA_TASK_ROOT", "_HANDLER", "AWS_LAMBDA_FUNCTION_NAME", "AWS_EXECUTION_ENV")}},
            "cwd": os.getcwd()}})
        conn.request("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response", body)
        conn.getresponse().read()
    """
)


def test_a_bootstrap_is_started_in_lambdas_environment_and_its_output_is_recorded(tmp_path):
    relay = start_relay(tmp_path)
    try:
        status, answer = relay.call("POST", "/init", init_body(provided_zip({"bootstrap": LOOP})))
        assert status == 200, answer
        assert answer["stdout"] == "starting function.handler hello\n"
        status, answer = relay.call("POST", "/invoke", b'"hi"')
        assert answer["status"] == "success", answer
        root = str(relay.code_dir.resolve())
        assert answer["result"] == {
            "env": {"LAMBDA_TASK_ROOT": root, "_HANDLER": "function.handler",
                    "AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_EXECUTION_ENV": None},
            "cwd": root,
        }  # fmt: skip
        assert answer["stdout"] == "got hi\n"
    finally:
        relay.stop()


def test_a_bootstrap_dying_mid_call_fails_it_with_runtime_exit_error_and_ends_the_container(
    tmp_path,
):
    relay = start_relay(tmp_path)
    try:
        assert relay.call("POST", "/init", init_body(provided_zip({"bootstrap": LOOP})))[0] == 200
        status, answer = relay.call("POST", "/invoke", b'"die"', {"X-Hotpool-Request-Id": "d1"})
        assert status == 200
        assert answer["error"]["type"] == "Runtime.ExitError"
        assert answer["error"]["message"].endswith("Runtime exited with error: exit status 7")
        assert answer["stdout"] == "got die\n"
        assert relay.process.wait(timeout=10) == 0  # the container ends: Main's pool drops it
    finally:
        relay.stop()


@pytest.mark.parametrize(
    ("files", "executable", "expected"),
    [
        pytest.param({"function.sh": "echo"}, (), "no file named 'bootstrap'", id="missing"),
        pytest.param({"bootstrap": "#!/bin/sh\n"}, (), "is not executable", id="not-executable"),
        pytest.param(
            {"bootstrap": "no #! line"}, ("bootstrap",), "could not be started", id="no-shebang"
        ),
    ],
)  # fmt: skip
def test_a_package_without_a_runnable_bootstrap_fails_init_saying_what_to_fix(
    tmp_path, files, executable, expected
):
    relay = start_relay(tmp_path)
    try:
        status, answer = relay.call("POST", "/init", init_body(provided_zip(files, executable)))
        assert (status, answer["error"]["type"]) == (422, "Runtime.InvalidEntrypoint")
        assert expected in answer["error"]["message"]
    finally:
        relay.stop()


def test_a_bootstrap_exiting_before_it_polls_fails_init_with_what_it_printed(tmp_path):
    relay = start_relay(tmp_path)
    bootstrap = "#!/bin/sh\necho 'cannot find my config' >&2\nexit 3\n"
    try:
        status, answer = relay.call(
            "POST", "/init", init_body(provided_zip({"bootstrap": bootstrap}))
        )
        assert (status, answer["error"]["type"]) == (422, "Runtime.ExitError")
        assert answer["error"]["message"] == "Runtime exited with error: exit status 3"
        assert answer["stderr"] == "cannot find my config\n"
    finally:
        relay.stop()


def test_a_bootstrap_from_a_layer_at_opt_is_used_when_the_package_has_none(tmp_path):
    relay = start_relay(tmp_path)
    layer = provided_zip({"bootstrap": LOOP})
    import base64

    body = init_body(provided_zip({"function.sh": ""}, ()),
                     layers_zip_b64=[base64.b64encode(layer).decode()])  # fmt: skip
    try:
        status, answer = relay.call("POST", "/init", body)
        assert status == 200, answer
        assert relay.call("POST", "/invoke", b"1")[1]["status"] == "success"
    finally:
        relay.stop()


def test_init_waits_for_an_external_runtime_that_polled_before_it(tmp_path, pool):
    relay = start_relay(tmp_path, "--external")
    try:
        runtime = StandIn(relay.api)
        polled = pool.submit(runtime.next)
        threading.Event().wait(0.2)  # the poll is under way before /init arrives
        assert relay.call("POST", "/init", init_body(None))[0] == 200
        invoked = pool.submit(relay.call, "POST", "/invoke", b"5", {"X-Hotpool-Request-Id": "e"})
        assert polled.result(timeout=10)[1] == b"5"
        runtime.request("POST", "/invocation/e/response", b"6")
        assert invoked.result(timeout=10)[1]["result"] == 6
    finally:
        relay.stop()


def test_only_the_runtime_the_relay_started_may_use_its_runtime_api(tmp_path):
    # the test process is no descendant of the relay: as another tenant on 127.0.0.1 would
    relay = start_relay(tmp_path)
    try:
        assert relay.call("POST", "/init", init_body(provided_zip({"bootstrap": LOOP})))[0] == 200
        outsider = StandIn(relay.api)
        for method, path in (("GET", "/invocation/next"), ("POST", "/invocation/x/response"),
                             ("POST", "/init/error")):  # fmt: skip
            status, _, body = outsider.request(method, path, b"{}")
            assert (status, json.loads(body)["errorType"]) == (403, "AccessDenied")
        status, answer = relay.call("POST", "/invoke", b'"still mine"')
        assert (status, answer["stdout"]) == (200, "got still mine\n")
    finally:
        relay.stop()
