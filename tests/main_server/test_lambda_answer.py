"""What the invoke path makes of a container's answer for Lambda's contract: the cold call's
record begins with the init output, and a function error has Lambda's body shape."""

from __future__ import annotations

import orjson
import pytest

from hotpool.main_server.invoke import _Attempt, _outcome
from hotpool.main_server.ports import ColdStart
from hotpool.main_server.reply import fill_record
from hotpool.shared.models import PoolEntry

pytestmark = pytest.mark.unit

ENTRY = PoolEntry("fn", 1, "m1", "c1", "10.0.0.1:9000")
COLD = ColdStart(
    ENTRY, start_ms=1.0, init_ms=1.0, total_ms=2.0, init_stdout="init out\n", init_stderr="warn\n"
)
REPLY = {"status": "success", "result": 1, "stdout": "call out\n", "stderr": ""}


def test_cold_record_begins_with_the_init_output():
    record: dict = {}
    fill_record(record, REPLY, COLD)
    assert (record["stdout"], record["stderr"]) == ("init out\ncall out\n", "warn\n")


def test_warm_record_has_the_call_output_only():
    record: dict = {}
    fill_record(record, REPLY, None)
    assert (record["stdout"], record["stderr"]) == ("call out\n", "")


def test_an_answer_that_is_not_text_is_kept_as_is():
    record: dict = {}
    fill_record(record, {**REPLY, "stdout": 5}, COLD)
    assert record["stdout"] == 5


FRAME = '  File "/code/main.py", line 2, in handler\n    raise ValueError("x")\n'


@pytest.mark.parametrize(
    ("stack_trace", "expected"),
    [([FRAME], [FRAME]), (None, []), ("not a list", []), ([FRAME, 3], [])],
)
def test_function_error_body_has_lambdas_fields(stack_trace, expected):
    error = {"type": "ValueError", "message": "x", "traceback": "Traceback ...\nValueError: x\n"}
    if stack_trace is not None:
        error["stack_trace"] = stack_trace
    attempt = _Attempt(ENTRY, reply={"status": "error", "error": error})
    done = _outcome(attempt, "req-7", 1.0)
    body = orjson.loads(done.body)
    assert (done.status, done.function_error) == (500, "ValueError")
    assert body["errorMessage"] == "x" and body["errorType"] == "ValueError"
    assert body["stackTrace"] == expected
    assert body["requestId"] == body["request_id"] == "req-7"
    assert body["error"] == {
        "code": "FunctionError",
        "type": "ValueError",
        "message": "x",
        "traceback": error["traceback"],
    }
