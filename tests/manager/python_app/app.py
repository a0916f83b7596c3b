"""The contract's handlers in Python; nodejs_app/app.js exports their twins by the same names.

Zipped as the function's code by tests/manager/bootstraps.py, never imported by the tests.
"""

import asyncio
import logging
import os
import subprocess
import sys
import time

# As on Lambda, basicConfig does nothing (the root logger has the runtime's handler) and
# the level must be set on the root logger; log lines reach each invocation's stdout.
logging.basicConfig(level=logging.INFO, format="%(message)s")
logging.getLogger().setLevel(logging.INFO)
NOT_CALLABLE = 42
print("loading app")


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


ENV_NAMES = (
    "GREETING", "AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_EXECUTION_ENV", "TZ", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL",
)  # fmt: skip


def lambda_env(event, context):
    found = {name: os.environ.get(name) for name in ENV_NAMES}
    return found | {"tz": time.tzname[0], "cwd": os.getcwd()}


def sync_loop_id(event, context):
    return id(asyncio.get_event_loop())


def spawner(event, context):
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    return child.pid
