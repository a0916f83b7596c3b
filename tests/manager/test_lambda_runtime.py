"""The bootstrap's Lambda pieces, imported here as plain modules: the /init config's handler
rule, the reserved environment, the log line formats, and the context object."""

from __future__ import annotations

import json
import logging
import re
import sys
import types
from collections.abc import Iterator

import pytest

from hotpool.manager.runtimes import PYTHON_BOOTSTRAP as BOOTSTRAP_PATH

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def runtime() -> Iterator[types.SimpleNamespace]:
    """The bootstrap's modules, imported from its folder (off sys.path again afterwards)."""
    sys.path.insert(0, str(BOOTSTRAP_PATH))
    try:
        from hotpool_runtime import config, context, environment, log_handler, logs

        yield types.SimpleNamespace(
            config=config,
            context=context,
            environment=environment,
            log_handler=log_handler,
            logs=logs,
        )
    finally:
        sys.path.remove(str(BOOTSTRAP_PATH))


def _config(runtime, **overrides):
    body = {
        "function_name": "fn",
        "function_version": 3,
        "handler": "main.handler",
        "memory_mb": 512,
        "timeout_s": 10,
        "env": {},
    }
    return runtime.config.FunctionConfig(body | overrides)


@pytest.mark.parametrize(
    ("handler", "module"),
    [
        ("main.handler", "main"),
        ("pkg.mod.handler", "pkg.mod"),
        ("src/handler.hello", "src.handler"),
        ("src/api/v1.get", "src.api.v1"),
        ("my-app/pkg.mod.run", "my-app.pkg.mod"),
    ],
)
def test_handler_names_the_module_awslambdaric_imports(runtime, handler, module):
    assert runtime.config.module_name(_config(runtime, handler=handler).handler) == module


@pytest.mark.parametrize(
    "handler", ["main", "main.", "/main.handler", "a//main.handler", "../main.handler", "a.b/m.f"]
)
def test_bad_handlers_refused(runtime, handler):
    with pytest.raises(Exception, match="handler must look like") as info:
        _config(runtime, handler=handler)
    assert info.value.status == 400


def test_bad_log_settings_refused(runtime):
    for field in ({"log_format": "xml"}, {"log_level": "LOUD"}, {"region": ""}):
        with pytest.raises(Exception) as info:
            _config(runtime, **field)
        assert info.value.status == 400


def test_reserved_variables(runtime):
    config = _config(runtime, region="eu-west-3", log_format="json", log_level="DEBUG")
    variables = runtime.environment.lambda_variables(
        config, code_dir="/code", runtime_dir="/rt", log_stream="2026/01/01/[3]abc"
    )
    assert variables == {
        "AWS_REGION": "eu-west-3",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "3",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/hotpool/functions/fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[3]abc",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python{}.{}".format(*sys.version_info[:2]),
        "LAMBDA_TASK_ROOT": "/code",
        "LAMBDA_RUNTIME_DIR": "/rt",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "DEBUG",
    }


@pytest.mark.parametrize(
    ("settings", "level"),
    [({}, None), ({"log_format": "json"}, "INFO"), ({"log_level": "WARN"}, "WARN")],
)
def test_the_log_level_is_set_beside_the_json_format_as_on_lambda(runtime, settings, level):
    variables = runtime.environment.lambda_variables(
        _config(runtime, **settings), code_dir="/code", runtime_dir="/rt", log_stream="s"
    )
    assert variables.get("AWS_LAMBDA_LOG_LEVEL") == level


def test_log_stream_is_shaped_like_lambdas(runtime):
    stream = runtime.environment.log_stream_name(_config(runtime))
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[3\][0-9a-f]{32}", stream)


def _record(
    message: str, level: int = logging.INFO, exc: bool = False, **extra
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise KeyError("missing")
        except KeyError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("app.db", level, "/code/app.py", 7, message, (), exc_info, "fn")
    record.created, record.msecs = 1700000000.25, 250.0
    record.aws_request_id = "rid-1"
    record.__dict__.update(extra)
    return record


def test_text_line(runtime):
    handler = runtime.log_handler
    formatter = logging.Formatter(handler.TEXT_FORMAT, handler.DATE_FORMAT)
    formatter.converter = __import__("time").gmtime
    line = formatter.format(_record("hello"))
    assert line == "[INFO]\t2023-11-14T22:13:20.250Z\trid-1\thello\n"
    with_trace = formatter.format(_record("failed", logging.ERROR, exc=True))
    assert with_trace.startswith("[ERROR]\t2023-11-14T22:13:20.250Z\trid-1\tfailed\nTraceback")
    assert with_trace.endswith("KeyError: 'missing'")


def test_json_line(runtime):
    line = runtime.log_handler.JsonFormatter().format(_record("hello", 25, order=9))
    assert line.endswith("\n")
    assert json.loads(line) == {
        "timestamp": "2023-11-14T22:13:20.250Z",
        "level": "INFO",  # 25 rounds down to INFO, as on Lambda
        "message": "hello",
        "logger": "app.db",
        "requestId": "rid-1",
        "order": 9,
    }


def test_json_line_of_an_exception(runtime):
    fields = json.loads(runtime.log_handler.JsonFormatter().format(_record("x", exc=True)))
    assert (fields["errorType"], fields["errorMessage"]) == ("KeyError", "'missing'")
    assert fields["location"] == "/code/app.py:fn:7"
    assert any('raise KeyError("missing")' in frame for frame in fields["stackTrace"])


def test_context_is_typed_as_awslambdarics(runtime, capsys):
    config = _config(runtime)
    ctx = runtime.context.LambdaContext(config, "stream", "rid-9", deadline=0.0)
    assert (ctx.memory_limit_in_mb, ctx.function_version) == ("512", "3")
    assert ctx.client_context is None
    assert (ctx.identity.cognito_identity_id, ctx.identity.cognito_identity_pool_id) == (None, None)
    assert ctx.invoked_function_arn == "arn:hotpool:lambda:us-east-1:000000000000:function:fn:3"
    assert ctx.get_remaining_time_in_millis() == 0
    ctx.log("no newline added")
    assert capsys.readouterr().out == "no newline added"
    assert "aws_request_id=rid-9" in repr(ctx)
