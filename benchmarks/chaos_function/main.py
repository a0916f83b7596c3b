"""The function every chaos run deploys: sleep as the event says, leaving evidence as it goes.

It appends two JSON lines to the file named by the function's env ``CHAOS_LOG``, one when the
call starts and one when it ends, each with one ``os.write`` on an ``O_APPEND`` descriptor
(atomic for lines this short), so concurrent containers never interleave. The file is the
ground truth of the run: a token started twice was delivered twice; two calls of one container
whose [start, end] intervals overlap ran at once; a start without an end was cut short.

An asynchronous event's lines also carry its attempt number (``context.attempt``; the request
id stays the same across attempts). An event with ``"fail": true`` raises after its end line,
so it is retried and then dead-lettered.
"""

import json
import os
import time


class ChaosFailure(Exception):
    """The failure an event asked for."""


def _append(line):
    fd = os.open(os.environ["CHAOS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def handler(event, context):
    evidence = {
        "token": event["token"],
        "request_id": context.aws_request_id,
        "attempt": getattr(context, "attempt", 1),
        "function": context.function_name,
        "version": context.function_version,
        "pid": os.getpid(),
        # the process backend runs the code in <containers>/<container id>/code
        "container": os.path.basename(os.path.dirname(os.getcwd())),
        "start": time.time(),
    }
    _append({"phase": "start", **evidence})
    time.sleep(max(0, min(int(event.get("sleep_ms", 10)), 9000)) / 1000)
    failing = bool(event.get("fail"))
    _append({"phase": "end", **evidence, "end": time.time(), "failed": failing})
    if failing:
        raise ChaosFailure(f"event {event['token']} asked to fail")
    return event["token"]
