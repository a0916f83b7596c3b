"""Lambda's runtime contract end to end, on both backends: the environment, the root log
handler and its formats, init output in the cold record, Lambda's error body, folder/module
handlers, and boto3 provided behind the function's own copy.

The environment, the function and init errors and a runtime dying at import run on the
Node.js runtime too, over twin handlers (``NODE_APP``); the log cases stay Python's: they test
its root logger and ``logging``'s levels, which Node's console has no twin of (its console
lines are in tests/manager/test_bootstrap.py and test_bootstrap_nodejs.py)."""

from __future__ import annotations

import re
import shutil
import textwrap
from typing import Any

import orjson
import pytest

from tests.helpers import make_zip
from tests.stack import Stack, wait_for

pytestmark = pytest.mark.integration

# the Serverless Framework layout: the handler is "src/handler.<function>"
APP = textwrap.dedent(
    """
    import logging
    import os
    import sys
    import time

    print("init print")
    logger = logging.getLogger()
    logger.setLevel(logging.INFO)
    logger.info("init log")
    logging.basicConfig(level=logging.DEBUG)  # does nothing: the root logger has a handler

    RESERVED = (
        "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_EXECUTION_ENV",
        "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ", "GREETING",
    )

    def env(event, context):
        return {
            "env": {name: os.environ.get(name) for name in RESERVED},
            "cwd": os.getcwd(),
            "tzname": list(time.tzname),
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "function_version": context.function_version,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "root_handlers": len(logging.getLogger().handlers),
        }

    def log(event, context):
        print("call print")
        logging.getLogger("app").info("call log %d", 42)
        logging.getLogger("app").debug("not shown")
        try:
            1 / 0
        except ZeroDivisionError:
            logging.getLogger("app").exception("it broke")
        context.log("via context\\n")
        return "logged"

    def fail(event, context):
        raise ValueError(f"bad input {event['n']}")

    def s3(event, context):
        import boto3

        client = boto3.client("s3")
        return {
            "own": getattr(boto3, "OWN", False),
            "region": client.meta.region_name,
            "file": boto3.__file__,
        }
    """
)
APP_ZIP = make_zip({"src/handler.py": APP})
OWN_BOTO3 = make_zip(
    {
        "main.py": "import boto3\n\ndef handler(event, context):\n"
        "    return {'own': boto3.OWN, 'client': boto3.client('s3')}\n",
        "boto3/__init__.py": "OWN = True\n\ndef client(name):\n    return 'own ' + name\n",
    }
)
LEVELS = make_zip(
    {
        "main.py": "import logging\n\ndef handler(event, context):\n"
        "    for level in ('debug', 'info', 'warning'):\n"
        "        getattr(logging.getLogger('app'), level)(level)\n"
    }
)
BROKEN = make_zip(
    {
        "main.py": "print('loading config')\nraise RuntimeError('no config')\n\n"
        "def handler(event, context):\n    pass\n"
    }
)
# the module dies at import, as a module holding more than its memory does
CRASHES = make_zip(
    {"main.py": "import os\nos._exit(3)\n\ndef handler(event, context):\n    pass\n"}
)
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
# the Node.js twins of APP's env and fail, BROKEN and CRASHES
NODE_APP = textwrap.dedent(
    """
    const RESERVED = [
      'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_LAMBDA_FUNCTION_NAME',
      'AWS_LAMBDA_FUNCTION_VERSION', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE',
      'AWS_LAMBDA_LOG_GROUP_NAME', 'AWS_LAMBDA_LOG_STREAM_NAME', 'AWS_EXECUTION_ENV',
      'LAMBDA_TASK_ROOT', 'LAMBDA_RUNTIME_DIR', 'TZ', 'GREETING',
    ];
    exports.env = async (event, context) => ({
      env: Object.fromEntries(RESERVED.map((name) => [name, process.env[name] ?? null])),
      cwd: process.cwd(),
      tzname: [new Date().toLocaleTimeString('en-US', { timeZoneName: 'short' }).split(' ').pop()],
      memory_limit_in_mb: context.memoryLimitInMB,
      function_version: context.functionVersion,
      log_group_name: context.logGroupName,
      log_stream_name: context.logStreamName,
    });
    exports.fail = async (event) => { throw new RangeError(`bad input ${event.n}`); };
    """
)
CODE = {
    "python": {"app": APP_ZIP, "broken": BROKEN, "crashes": CRASHES},
    "nodejs": {
        "app": make_zip({"src/handler.js": NODE_APP}),
        "broken": make_zip({"index.js": "console.log('loading config');\n"
                            "throw new RangeError('no config');\n"}),
        "crashes": make_zip({"index.js": "process.exit(3);\n"}),
    },
}  # fmt: skip
# each language's own exception
ERROR_TYPE = {"python": "ValueError", "nodejs": "RangeError"}
INIT_ERROR_TYPE = {"python": "RuntimeError", "nodejs": "RangeError"}
RUNTIMES = [
    "python",
    pytest.param(
        "nodejs",
        marks=pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH"),
    ),
]


@pytest.fixture(params=["process", "docker"])
def stack_backend(request) -> str:
    return request.param


async def _deploy(stack: Stack, name: str, code: bytes, **params: Any) -> None:
    resp = await stack.deploy(name, code, **params)
    assert resp.status == 201, await resp.text()


async def _records(stack: Stack, name: str, count: int) -> list[dict[str, Any]]:
    """The function's ``count`` execution records, oldest first."""
    records: list[dict[str, Any]] = []

    async def written() -> bool:
        nonlocal records
        resp = await stack.client.get(f"/v1/functions/{name}/invocations?limit=50")
        records = (await resp.json())["invocations"]
        return len(records) >= count

    assert await wait_for(written), records
    return sorted(records, key=lambda r: r["started_at"])


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_environment_is_lambdas(hotpool_stack, runtime):
    stack = await hotpool_stack()
    await _deploy(
        stack,
        "envfn",
        CODE[runtime]["app"],
        runtime=runtime,
        handler="src/handler.env",
        memory_mb=256,
        env={"GREETING": "hi"},
    )
    resp = await stack.invoke("envfn", {})
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    env = result["env"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "envfn"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == result["function_version"] == "1"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == result["memory_limit_in_mb"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == result["log_group_name"]
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == result["log_stream_name"]
    execution_env = {"python": r"AWS_Lambda_python3\.\d+", "nodejs": r"AWS_Lambda_nodejs\d+\.x"}
    assert re.fullmatch(execution_env[runtime], env["AWS_EXECUTION_ENV"])
    assert env["LAMBDA_TASK_ROOT"] == result["cwd"]
    assert env["LAMBDA_RUNTIME_DIR"]
    assert (env["TZ"], result["tzname"][0]) == (":UTC", "UTC")
    assert env["GREETING"] == "hi"
    if runtime == "python":
        assert result["root_handlers"] == 1  # the runtime's, and basicConfig added none


async def test_region_comes_from_the_setting(hotpool_stack):
    stack = await hotpool_stack(function_region="eu-central-1")
    await _deploy(stack, "region", APP_ZIP, handler="src.handler.env")  # the dotted spelling
    env = (await (await stack.invoke("region", {})).json())["env"]
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-central-1"


async def test_log_lines_and_init_output_in_the_records(hotpool_stack):
    stack = await hotpool_stack()
    await _deploy(stack, "logfn", APP_ZIP, handler="src/handler.log")
    cold = await stack.invoke("logfn", {})
    assert (cold.status, await cold.json()) == (200, "logged")
    warm = await stack.invoke("logfn", {})
    assert warm.headers["X-Hotpool-Cold-Start"] == "false"
    first, second = await _records(stack, "logfn", 2)
    request_id = cold.headers["X-Hotpool-Request-Id"]
    # the module's own output first (no request id yet), then the call's
    init_lines = rf"init print\n\[INFO\]\t{TIME}\t\tinit log\n"
    assert re.fullmatch(init_lines + _call_lines(request_id), first["stdout"]), first
    warm_id = warm.headers["X-Hotpool-Request-Id"]
    assert re.fullmatch(_call_lines(warm_id), second["stdout"]), second


def _call_lines(request_id: str) -> str:
    """What the ``log`` handler writes, as a pattern."""
    return (
        rf"call print\n\[INFO\]\t{TIME}\t{request_id}\tcall log 42\n"
        rf"\[ERROR\]\t{TIME}\t{request_id}\tit broke\nTraceback \(most recent call last\):\n"
        r"(.*\n)*ZeroDivisionError: division by zero\nvia context\n"
    )


async def test_json_log_format(hotpool_stack):
    stack = await hotpool_stack()
    await _deploy(stack, "jsonlog", APP_ZIP, handler="src/handler.log", log_format="json")
    resp = await stack.invoke("jsonlog", {})
    assert resp.status == 200
    (record,) = await _records(stack, "jsonlog", 1)
    lines = record["stdout"].splitlines()
    assert (len(lines), lines[0], lines[2], lines[5]) == (
        6,
        "init print",
        "call print",
        "via context",
    )
    init_log, call_log, error_log = (orjson.loads(lines[i]) for i in (1, 3, 4))
    assert set(init_log) == {"timestamp", "level", "message", "logger", "requestId"}
    assert (init_log["level"], init_log["message"], init_log["requestId"]) == (
        "INFO",
        "init log",
        "",
    )
    assert re.fullmatch(TIME, init_log["timestamp"])
    request_id = resp.headers["X-Hotpool-Request-Id"]
    assert call_log == {
        **call_log,
        "message": "call log 42",
        "logger": "app",
        "requestId": request_id,
    }
    assert (error_log["level"], error_log["errorType"]) == ("ERROR", "ZeroDivisionError")
    assert error_log["errorMessage"] == "division by zero"
    assert any("1 / 0" in frame for frame in error_log["stackTrace"])


@pytest.mark.parametrize(
    ("params", "levels"),
    [
        ({}, ["WARNING"]),  # Lambda leaves the root logger at logging's default
        ({"log_level": "DEBUG"}, ["DEBUG", "INFO", "WARNING"]),
        ({"log_level": "WARN"}, ["WARNING"]),
        ({"env": {"AWS_LAMBDA_LOG_LEVEL": "INFO"}}, ["INFO", "WARNING"]),
        ({"log_format": "json"}, ["INFO", "WARNING"]),  # JSON logs default to INFO, as Lambda's
    ],
)
async def test_log_level(hotpool_stack, params, levels):
    stack = await hotpool_stack()
    await _deploy(stack, "levels", LEVELS, **params)
    assert (await stack.invoke("levels", {})).status == 200
    (record,) = await _records(stack, "levels", 1)
    lines = record["stdout"].splitlines()
    if params.get("log_format") == "json":
        assert [orjson.loads(line)["level"] for line in lines] == levels
    else:
        assert [line.split("\t")[0] for line in lines] == [f"[{level}]" for level in levels]


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_function_error_has_lambdas_shape(hotpool_stack, runtime):
    stack = await hotpool_stack()
    code = CODE[runtime]["app"]
    await _deploy(stack, "failing", code, runtime=runtime, handler="src/handler.fail")
    resp = await stack.invoke("failing", {"n": 3})
    assert resp.status == 500
    assert resp.headers["X-Hotpool-Function-Error"] == ERROR_TYPE[runtime]
    body = await resp.json()
    request_id = resp.headers["X-Hotpool-Request-Id"]
    assert body["errorMessage"] == "bad input 3"
    assert body["errorType"] == ERROR_TYPE[runtime]
    assert body["requestId"] == body["request_id"] == request_id
    assert body["error"]["type"] == ERROR_TYPE[runtime]
    if runtime == "nodejs":  # Lambda's Node runtime: the stack's lines, under both names
        assert body["stackTrace"][0] == "RangeError: bad input 3"
        assert body["trace"] == body["stackTrace"]
        assert any("src/handler.js" in line for line in body["stackTrace"])
        return
    assert isinstance(body["stackTrace"], list) and len(body["stackTrace"]) == 1
    assert re.fullmatch(
        r'  File ".*/src/handler\.py", line \d+, in fail\n'
        r"    raise ValueError\(f\"bad input \{event\['n'\]\}\"\)\n",
        body["stackTrace"][0],
    ), body["stackTrace"]
    assert "Traceback" in body["error"]["traceback"]


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_init_error_has_lambdas_shape(hotpool_stack, runtime):
    stack = await hotpool_stack()
    await _deploy(stack, "broken", CODE[runtime]["broken"], runtime=runtime)
    resp = await stack.invoke("broken", {})
    assert resp.status == 500
    assert resp.headers["X-Hotpool-Function-Error"] == INIT_ERROR_TYPE[runtime]
    body = await resp.json()
    assert body["errorType"] == INIT_ERROR_TYPE[runtime]
    assert "no config" in body["errorMessage"]
    assert body["requestId"] == body["request_id"] == resp.headers["X-Hotpool-Request-Id"]
    # what the module printed before it failed is in the record, and not in the response
    assert "loading config" not in await resp.text()
    (record,) = await _records(stack, "broken", 1)
    # printed as is by Python; by Node's console in Lambda's format, with no request id yet
    printed = {
        "python": r"loading config\n",
        "nodejs": rf"{TIME}\tundefined\tINFO\tloading config\n",
    }
    assert re.fullmatch(printed[runtime], record["stdout"]), record["stdout"]
    assert record["error"]["type"] == INIT_ERROR_TYPE[runtime]


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_module_that_kills_its_runtime_at_import_is_a_function_error(
    hotpool_stack, runtime
):
    stack = await hotpool_stack()
    await _deploy(stack, "crashes", CODE[runtime]["crashes"], runtime=runtime)
    resp = await stack.invoke("crashes", {})
    body = await resp.json()
    assert resp.status == 500, body
    assert resp.headers["X-Hotpool-Function-Error"] == "RuntimeExited"
    assert "exited with code 3" in body["errorMessage"], body


async def test_boto3_is_provided(hotpool_stack):
    stack = await hotpool_stack()
    await _deploy(stack, "useboto", APP_ZIP, handler="src/handler.s3")
    resp = await stack.invoke("useboto", {})
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert (result["own"], result["region"]) == (False, "us-east-1")
    assert "/provided/boto3/" in result["file"]


async def test_a_functions_own_boto3_wins(hotpool_stack):
    stack = await hotpool_stack()
    await _deploy(stack, "ownboto", OWN_BOTO3)
    resp = await stack.invoke("ownboto", {})
    assert (resp.status, await resp.json()) == (200, {"own": True, "client": "own s3"})
