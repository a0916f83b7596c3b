"""The Node.js bootstrap's own cases, beside the contract every runtime passes
(test_bootstrap.py, test_bootstrap_http.py): Lambda's Node semantics where Node differs
from Python (module systems, callbacks and the event loop, error shapes, JSON console lines,
NODE_PATH and layers found by require)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.manager import bootstraps
from tests.manager.bootstraps import init, invoke, make_zip, with_handler

pytestmark = pytest.mark.integration


def init_body(handler: str = "app.echo", **overrides: Any) -> dict[str, Any]:
    """An /init body with nodejs_app/ as the code."""
    return bootstraps.init_body(handler, "nodejs", **overrides)


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("index.handler", {"index": {"n": 1, "s": "ab"}}),
        ("module-exports.handler", "module.exports"),
        ("src/my-app.handler", "helper in src"),
        ("esm.handler", "esm"),
        ("esm_pkg/app.handler", True),
        ("uses_dep.handler", "***ab"),
        ("app.nested.deeper.handler", "nested export"),
    ],
)
def test_handlers_of_every_module_system_load_and_answer(start_node, handler, expected):
    _, conn = with_handler(start_node, handler)
    status, body = invoke(conn, {"n": 1, "s": "ab"})
    assert (status, body["status"]) == (200, "success"), body
    assert body["result"] == expected


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("app.callback", {"via": "callback", "n": 3}),
        ("app.legacy", {"legacy": True}),
        ("app.syncReturn", None),  # a sync handler's return value is ignored, as on Lambda
    ],
)
def test_callback_and_legacy_handlers(start_node, handler, expected):
    _, conn = with_handler(start_node, handler)
    assert invoke(conn, {"n": 3})[1]["result"] == expected


def test_the_callback_waits_for_the_event_loop_unless_told_not_to(start_node, tmp_path):
    _, conn = with_handler(start_node, "app.context_info")
    assert invoke(conn, {})[1]["result"]["callbackWaitsForEmptyEventLoop"] is True
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
    # the container serves on
    assert invoke(conn, {"n": 5})[1]["error"]["type"] == error_type


def test_console_lines_as_json_with_a_level(start_node):
    _, conn = with_handler(start_node, "app.noisy", log_format="json", log_level="ERROR")
    body = invoke(conn, {}, {"X-Hotpool-Request-Id": "req-2"})[1]
    first, rest = body["stdout"].split("\n", 1)
    line = json.loads(first)
    assert {k: line[k] for k in ("level", "requestId", "message")} == {
        "level": "ERROR", "requestId": "req-2", "message": "an error line"}  # fmt: skip
    assert rest == "raw out\n"  # INFO and WARN lines are below the level


def test_node_s_lambda_environment(start_node):
    _, conn = with_handler(start_node, "app.lambda_env")
    env = invoke(conn, {})[1]["result"]
    major = env["AWS_EXECUTION_ENV"].removeprefix("AWS_Lambda_nodejs").removesuffix(".x")
    assert major.isdigit() and int(major) >= 18
    assert env["_HANDLER"] == "app.lambda_env"
    assert "/nodejs/node_modules" in env["NODE_PATH"]
    # NODE_PATH is not reserved on Lambda: the function's own wins
    _, conn = with_handler(start_node, "app.lambda_env", env={"NODE_PATH": "/mine"})
    assert invoke(conn, {})[1]["result"]["NODE_PATH"] == "/mine"


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
