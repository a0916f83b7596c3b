"""The function every chaos run deploys: sleep as the event says, leaving evidence as it goes.

It appends two JSON lines to the file named by the function's env ``CHAOS_LOG``, one when the
call starts and one when it ends, each with one ``os.write`` on an ``O_APPEND`` descriptor
(atomic for lines this short), so concurrent containers never interleave. The file is the
ground truth of the run: a token started twice was delivered twice; two calls of one container
whose [start, end] intervals overlap ran at once; a start without an end was cut short.

An asynchronous event's lines also carry its attempt number (``context.attempt``; the request
id stays the same across attempts). An event with ``"fail": true`` raises after its end line,
so it is retried and then dead-lettered.

An event with ``"stream": n`` returns a generator of n items (``"<token>:<i>\\n"``), sleeping
``gap_ms`` between them; its lines say ``"kind": "stream"``, and its end line is written when
the generator finishes or is closed early (``"aborted": true``: its client left, or Main
stopped it). A WebSocket event (API Gateway's, with ``requestContext.eventType``) leaves lines
with ``"kind": "ws"`` and the Main's host (``domain``): ``$connect`` and ``$disconnect`` under
the token ``ws-<event type>-<connection id>``, a message under the token of its JSON body,
whose reply is that token. A Scheduled Event (EventBridge's, ``"source": "aws.events"``: a
schedule's tick) leaves lines with ``"kind": "schedule"`` under the token of its event id, with
the schedule's name, the tick's scheduled ``time`` and the ``event_id``: one tick fired twice
would show as two event ids for one time, a re-delivery of one event as two runs of its token.
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


def _evidence(token, context, **extra):
    return {
        "token": token,
        "request_id": context.aws_request_id,
        "attempt": getattr(context, "attempt", 1),
        "function": context.function_name,
        "version": context.function_version,
        "pid": os.getpid(),
        # the process backend runs the code in <containers>/<container id>/code
        "container": os.path.basename(os.path.dirname(os.getcwd())),
        **extra,
        "start": time.time(),
    }


def _sleep(ms):
    time.sleep(max(0, min(int(ms), 9000)) / 1000)


def _items(evidence, count, gap_ms):
    aborted = True
    try:
        for i in range(count):
            if i:
                _sleep(gap_ms)
            yield f"{evidence['token']}:{i}\n"
        aborted = False
    finally:  # GeneratorExit lands here too: the client left, or Main stopped the stream
        _append({"phase": "end", **evidence, "end": time.time(), "failed": False,
                 "aborted": aborted})  # fmt: skip


def _websocket(event, context):
    request = event["requestContext"]
    kind = request["eventType"]
    domain = request.get("domainName", "")
    if kind == "MESSAGE":
        message = json.loads(event["body"])
        token, sleep_ms = message["token"], message.get("sleep_ms", 10)
    else:
        token, sleep_ms = f"ws-{kind.lower()}-{request['connectionId']}", 0
    evidence = _evidence(token, context, kind="ws", domain=domain)
    _append({"phase": "start", **evidence})
    _sleep(sleep_ms)
    _append({"phase": "end", **evidence, "end": time.time(), "failed": False})
    return {"statusCode": 200, "body": token} if kind != "DISCONNECT" else None


def _scheduled(event, context):
    evidence = _evidence(
        event["id"], context, kind="schedule", event_id=event["id"], time=event["time"],
        schedule=event["resources"][0].rsplit("/", 1)[-1],
    )  # fmt: skip
    _append({"phase": "start", **evidence})
    _sleep(10)
    _append({"phase": "end", **evidence, "end": time.time(), "failed": False})
    return event["id"]


def handler(event, context):
    if event.get("source") == "aws.events":
        return _scheduled(event, context)
    if "requestContext" in event:
        return _websocket(event, context)
    if "stream" in event:
        evidence = _evidence(event["token"], context, kind="stream")
        _append({"phase": "start", **evidence})
        return _items(evidence, int(event["stream"]), event.get("gap_ms", 10))
    evidence = _evidence(event["token"], context)
    _append({"phase": "start", **evidence})
    _sleep(event.get("sleep_ms", 10))
    failing = bool(event.get("fail"))
    _append({"phase": "end", **evidence, "end": time.time(), "failed": failing})
    if failing:
        raise ChaosFailure(f"event {event['token']} asked to fail")
    return event["token"]
