"""The function every chaos run deploys: sleep as the event says, leaving evidence as it goes.

It appends two JSON lines to the file named by the function's env ``CHAOS_LOG``, one when the
call starts and one when it ends, each with one ``os.write`` on an ``O_APPEND`` descriptor
(atomic for lines this short), so concurrent containers never interleave. The file is the
ground truth of the run: a token started twice was delivered twice; two calls of one container
whose [start, end] intervals overlap ran at once; a start without an end was cut short.
"""

import json
import os
import time


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
        "function": context.function_name,
        "version": context.function_version,
        "pid": os.getpid(),
        # the process backend runs the code in <containers>/<container id>/code
        "container": os.path.basename(os.path.dirname(os.getcwd())),
        "start": time.time(),
    }
    _append({"phase": "start", **evidence})
    time.sleep(max(0, min(int(event.get("sleep_ms", 10)), 9000)) / 1000)
    _append({"phase": "end", **evidence, "end": time.time()})
    return event["token"]
