"""The Python runtime's own cases, beside the contract every runtime passes
(test_bootstrap.py): Decimals, asyncio's loop, SystemExit, the root logger, the imports the
bootstrap leaves undone, a function's modules named like the runtime's, and an aborted stream
cancelling the generator's pending await."""

from __future__ import annotations

import socket
import textwrap
import time

import pytest

from hotpool.manager.runtimes import PYTHON_BOOTSTRAP as BOOTSTRAP_PATH
from tests.manager.bootstraps import (
    call,
    closed_by_server,
    init,
    init_body,
    invoke,
    make_zip,
    with_handler,
)
from tests.manager.frames import LOCAL, FrameReader, items, stream_request, summary, wait_for_mark

pytestmark = pytest.mark.integration

# where AWS's own runtime interface client, run by the provided relay over the same handlers,
# shows what Lambda's Python runtime does
AS_AWSLAMBDARIC = pytest.mark.parametrize("runtime", ["python", "provided"], indirect=True)


@AS_AWSLAMBDARIC
def test_decimals_come_back_as_numbers_as_lambdas_encoder_gives_them(start_runtime):
    _, conn = with_handler(start_runtime, "app.decimals")
    status, body = invoke(conn, {})
    assert (status, body["status"]) == (200, "success")
    assert body["result"] == {"count": 42, "price": 9.5}


def test_async_handler_runs_on_one_persistent_loop(start_bootstrap):
    _, conn = with_handler(start_bootstrap, "app.async_handler")
    first = invoke(conn, {"n": 1})[1]
    second = invoke(conn, {"n": 2})[1]
    assert (first["result"]["n"], second["result"]["n"]) == (2, 3)
    assert first["result"]["loop_id"] == second["result"]["loop_id"]


def test_system_exit_from_handler_does_not_stop_the_server(start_bootstrap):
    bootstrap, conn = with_handler(start_bootstrap, "app.exit_handler")
    body = invoke(conn, None)[1]
    assert (body["status"], body["error"]["type"]) == ("error", "SystemExit")
    assert call(conn, "GET", "/healthz")[0] == 200
    assert bootstrap.process.poll() is None


LOG_CASES = [
    ({}, ["[WARNING]"]),  # the root logger at logging's default, as on Lambda
    ({"log_level": "TRACE"}, ["[DEBUG]", "[INFO]", "[WARNING]"]),  # Lambda's TRACE is DEBUG
    ({"env": {"AWS_LAMBDA_LOG_FORMAT": "json"}}, ['{"timestamp"'] * 2),  # INFO and up
]


@pytest.mark.parametrize(
    ("runtime", "overrides", "expected"),
    [
        *(("python", *case) for case in LOG_CASES),
        # not the JSON case: awslambdaric takes INFO from AWS_LAMBDA_LOG_LEVEL, which Lambda
        # sets beside the format, not from the format variable alone
        *(("provided", *case) for case in LOG_CASES[:2]),
        # the function's JSON setting: the relay sets the level beside it, as Lambda does
        ("provided", {"log_format": "json"}, ['{"timestamp"'] * 2),
    ],
    indirect=["runtime"],
)
def test_log_settings_reach_the_root_logger(start_runtime, overrides, expected):
    _, conn = with_handler(start_runtime, "lines.log_lines", **overrides)
    lines = invoke(conn, None)[1]["stdout"].splitlines()
    assert [line[: len(prefix)] for line, prefix in zip(lines, expected, strict=True)] == expected


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


def test_an_abort_cancels_an_async_generator_waiting_for_its_next_item_at_once(
    start_bootstrap, tmp_path
):
    bootstrap, _ = with_handler(start_bootstrap, "gens.dispatch")
    marker = tmp_path / "marker"
    with socket.create_connection((LOCAL, bootstrap.port), timeout=10) as sock:
        sock.sendall(stream_request("slow_async", path=str(marker)))
        reader = FrameReader(sock)
        assert reader.head()[0] == 200
        first = reader.frame()
        wait_for_mark(marker, "waiting")
        sock.shutdown(socket.SHUT_WR)
        aborted_at = time.monotonic()
        wait_for_mark(marker, "finally")
        closed_after_s = time.monotonic() - aborted_at
        frames = [first, *reader.frames()]
        assert closed_by_server(sock)

    # it was sleeping for 10 s: cancelled in its await, then closed
    assert closed_after_s < 1.0
    assert marker.read_text().split() == ["waiting", "CancelledError", "finally"]
    assert items(frames) == [b"first"]
    end = summary(frames)
    assert (end["aborted"], end["status"]) == (True, "success")
