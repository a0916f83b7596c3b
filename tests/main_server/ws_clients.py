"""Helpers of the WebSocket tests: a function that keeps a ledger of the events it got (and
echoes a message's event back), ways to read that ledger and connect, and botocore's SigV4
signature of a request to the @connections API."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hotpool.shared.ws_token import access_key_id
from tests.helpers import handler_zip
from tests.stack import wait_for

# every event is a ledger line as the handler starts it ("start") and ends it ("end"); the
# query of $connect and a message's routeKey steer what it answers
PRELUDE = """
import json, os, time

def _log(event, phase):
    with open(os.environ["LEDGER"], "a") as f:
        f.write(json.dumps({"event": event, "phase": phase, "at": time.time()}) + "\\n")
"""
BODY = """
_log(event, "start")
ctx = event["requestContext"]
if ctx["eventType"] == "CONNECT":
    query = event.get("queryStringParameters") or {}
    if "refuse" in query:
        return {"statusCode": int(query["refuse"]), "body": "not you"}
    if "fail" in query:
        raise RuntimeError("no connections today")
    return {"statusCode": 200}
if ctx["routeKey"] == "sleep":
    time.sleep(0.05)
_log(event, "end")
if event.get("isBase64Encoded"):
    return {"statusCode": 200, "body": event["body"], "isBase64Encoded": True}
if ctx["routeKey"] == "silent":
    return None
if ctx["routeKey"] == "plain":
    return [1, "two"]
if ctx["routeKey"] == "fail":
    raise ValueError("bad message")
return {"statusCode": 200, "body": json.dumps(event)}
"""
LEDGER_ECHO = handler_zip(BODY, prelude=PRELUDE)
# no ledger: the event back as the reply (for backends whose files the test cannot read)
ECHO = handler_zip(
    """
    if event["requestContext"]["eventType"] == "CONNECT":
        return {"statusCode": 200}
    return {"statusCode": 200, "body": json.dumps(event)}
    """,
    prelude="import json",
)


def ledger(path: Path, phase: str = "start") -> list[dict[str, Any]]:
    """The ledger's lines of ``phase``, oldest first."""
    if not path.exists():
        return []
    lines = [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["phase"] == phase]


def events(path: Path, event_type: str) -> list[dict[str, Any]]:
    """The events of ``event_type`` (CONNECT, MESSAGE, DISCONNECT) the function started."""
    return [
        line["event"]
        for line in ledger(path)
        if line["event"]["requestContext"]["eventType"] == event_type
    ]


async def disconnect_of(path: Path, connection_id: str) -> dict[str, Any]:
    """The ``$disconnect`` event of ``connection_id``, once it arrived."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        found[:] = [
            e
            for e in events(path, "DISCONNECT")
            if e["requestContext"]["connectionId"] == connection_id
        ]
        return bool(found)

    assert await wait_for(arrived), f"no $disconnect of {connection_id}"
    assert len(found) == 1, found
    return found[0]


def ws_url(stack: Any, path: str) -> str:
    """The ws:// URL of ``path`` on the stack's Main."""
    return str(stack.client.make_url(path)).replace("http://", "ws://", 1)


async def deploy(stack: Any, name: str, code: bytes, ledger_path: Path | None = None, **params):
    """Deploy a WebSocket function (``websocket=key`` unless told)."""
    params.setdefault("websocket", "key")
    if ledger_path is not None:
        params["env"] = {"LEDGER": str(ledger_path)}
    resp = await stack.deploy(name, code, **params)
    assert resp.status == 201, await resp.text()


async def records(stack: Any, name: str, n: int, namespace: str = "default") -> list[dict]:
    """The function's execution records once there are ``n``."""
    found: list[dict] = []

    async def arrived() -> bool:
        nonlocal found
        resp = await stack.client.get(
            f"/v1/functions/{name}/invocations", params={"namespace": namespace}
        )
        found = (await resp.json())["invocations"]
        return len(found) >= n

    assert await wait_for(arrived), found
    return found


async def settle() -> None:
    """Let the server's side of a close run (it shares the test's loop)."""
    await asyncio.sleep(0.05)


def sigv4_headers(
    method: str,
    url: str,
    body: bytes,
    token: str,
    *,
    service: str = "execute-api",
    at: datetime.datetime | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers botocore's SigV4 signer adds to a request with the AWS credentials of a
    connections token (X-Amz-Date, Authorization), signed as of ``at`` (UTC) or now."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    signer = SigV4Auth(Credentials(access_key_id(token), token), service, "us-east-1")
    if at is None:
        signer.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=at):
            signer.add_auth(request)
    return dict(request.headers.items())
