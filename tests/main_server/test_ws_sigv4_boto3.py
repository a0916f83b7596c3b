"""boto3's own ``apigatewaymanagementapi`` client, unchanged, on the @connections API of a real
Main (on a real port, process backend): with the AWS credentials a WebSocket function finds in
its env it sends to, describes and closes a connection held by a real WebSocket client
(``websockets``), botocore raising its modelled errors; and a function whose handler posts to
its own connection with boto3, as the Lambda behind API Gateway does."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hotpool.main_server.state import WS_TOKENS
from tests.helpers import free_port, handler_zip
from tests.main_server.ws_clients import deploy, ws_url

pytestmark = pytest.mark.integration

AWS_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "HOTPOOL_CONNECTIONS_URL")
# invoked directly: the env it would sign with; on a WebSocket message: the connection's id
ENV_AND_ID = handler_zip(
    """
    if "requestContext" not in event:
        return {name: os.environ.get(name) for name in event["names"]}
    if event["requestContext"]["eventType"] != "MESSAGE":
        return {"statusCode": 200}
    return {"statusCode": 200, "body": event["requestContext"]["connectionId"]}
    """,
    prelude="import os",
)
# the pattern of a Lambda behind an API Gateway WebSocket API, word for word: a client on the
# endpoint it is given, and one on f"https://{domainName}/{stage}" (here http)
BOTO3_POSTING = handler_zip(
    """
    ctx = event["requestContext"]
    if ctx["eventType"] != "MESSAGE":
        return {"statusCode": 200}
    cid = ctx["connectionId"]
    endpoint = os.environ["HOTPOOL_CONNECTIONS_URL"]
    client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    client.post_to_connection(ConnectionId=cid, Data=b"progress 1/2")
    by_domain = boto3.client(
        "apigatewaymanagementapi", endpoint_url=f"http://{ctx['domainName']}/{ctx['stage']}"
    )
    by_domain.post_to_connection(ConnectionId=cid, Data=b"progress 2/2")
    seen = client.get_connection(ConnectionId=cid)
    try:
        client.post_to_connection(ConnectionId="gone00000000=", Data=b"anyone?")
        gone = "no error"
    except client.exceptions.GoneException:
        gone = "GoneException"
    except client.exceptions.ClientError as exc:
        gone = exc.response["Error"]["Code"]
    body = {"result": "done", "ip": seen["Identity"]["SourceIp"], "unknown": gone}
    return {"statusCode": 200, "body": json.dumps(body)}
    """,
    prelude="import json, os\nimport boto3",
)


async def function_env(stack: Any, name: str) -> dict[str, str | None]:
    resp = await stack.invoke(name, {"names": AWS_NAMES})
    assert resp.status == 200, await resp.text()
    return await resp.json()


def management_client(env: dict[str, str | None], **credentials: str) -> Any:
    """boto3's client as a function makes it from its env (``credentials`` replace a part)."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=env["HOTPOOL_CONNECTIONS_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=credentials.get("key", env["AWS_ACCESS_KEY_ID"]),
        aws_secret_access_key=credentials.get("secret", env["AWS_SECRET_ACCESS_KEY"]),
        config=Config(retries={"max_attempts": 1}),
    )


async def call(client: Any, operation: str, **params: Any) -> Any:
    """A blocking boto3 call off the loop the server runs on."""
    return await asyncio.to_thread(getattr(client, operation), **params)


async def client_error(client: Any, operation: str, **params: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as raised:
        await call(client, operation, **params)
    error = raised.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]


async def test_boto3_sends_describes_and_closes_with_the_functions_credentials(hotpool_stack):
    stack = await hotpool_stack(port=free_port())
    await deploy(stack, "chat", ENV_AND_ID, websocket="public")
    env = await function_env(stack, "chat")
    client = await asyncio.to_thread(management_client, env)
    assert await stack.client.app[WS_TOKENS].verify(env["AWS_SECRET_ACCESS_KEY"]) == "chat"

    async with connect(ws_url(stack, "/ws/chat")) as ws:
        await ws.send("whoami")
        cid = await asyncio.wait_for(ws.recv(), 10)
        await call(client, "post_to_connection", ConnectionId=cid, Data=b"pushed by boto3")
        assert await asyncio.wait_for(ws.recv(), 10) == "pushed by boto3"

        described = await call(client, "get_connection", ConnectionId=cid)
        assert isinstance(described["ConnectedAt"], datetime.datetime)
        assert described["LastActiveAt"] >= described["ConnectedAt"]
        assert described["Identity"]["SourceIp"] == "127.0.0.1"
        assert described["Identity"]["UserAgent"].startswith("Python/")

        await call(client, "delete_connection", ConnectionId=cid)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 1000
    with pytest.raises(client.exceptions.GoneException):
        await call(client, "post_to_connection", ConnectionId=cid, Data=b"late")


async def test_other_credentials_are_404_or_401_through_boto3(hotpool_stack):
    stack = await hotpool_stack(port=free_port())
    await deploy(stack, "chat", ENV_AND_ID, websocket="public")
    await deploy(stack, "other", ENV_AND_ID, websocket="key")
    owner, other = await function_env(stack, "chat"), await function_env(stack, "other")
    intruder = await asyncio.to_thread(management_client, other)
    wrong_secret = other["AWS_SECRET_ACCESS_KEY"]
    guesser = await asyncio.to_thread(management_client, owner, secret=wrong_secret)

    async with connect(ws_url(stack, "/ws/chat")) as ws:
        await ws.send("whoami")
        cid = await asyncio.wait_for(ws.recv(), 10)
        for operation, params in (
            ("post_to_connection", {"Data": b"hijack"}),
            ("get_connection", {}),
            ("delete_connection", {}),
        ):
            foreign = await client_error(intruder, operation, ConnectionId=cid, **params)
            unknown = await client_error(intruder, operation, ConnectionId="none0000=", **params)
            assert foreign == unknown == (404, "NotFoundException")
            assert await client_error(guesser, operation, ConnectionId=cid, **params) == (
                401,
                "UnauthorizedException",
            )
        # nothing reached the socket: the next message is the answer to this one
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), 10) == cid


async def test_aws_credentials_are_added_only_where_the_user_set_none(hotpool_stack):
    stack = await hotpool_stack(port=free_port())
    names = {"names": [*AWS_NAMES, "AWS_SESSION_TOKEN"]}
    cases = {
        "derived": ({}, "key"),
        "own": ({"AWS_ACCESS_KEY_ID": "AKIAUSER", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}, "key"),
        "session": ({"AWS_SESSION_TOKEN": "a-session"}, "key"),
        "plain": ({}, "off"),
    }
    found = {}
    for name, (env, mode) in cases.items():
        assert (await stack.deploy(name, ENV_AND_ID, websocket=mode, env=env)).status == 201
        found[name] = await (await stack.invoke(name, names)).json()

    token = await stack.client.app[WS_TOKENS].token("derived")
    assert found["derived"]["AWS_SECRET_ACCESS_KEY"] == token
    assert token.startswith(found["derived"]["AWS_ACCESS_KEY_ID"] + "_")
    assert "/" not in found["derived"]["AWS_ACCESS_KEY_ID"]
    assert (found["own"]["AWS_ACCESS_KEY_ID"], found["own"]["AWS_SECRET_ACCESS_KEY"]) == (
        "AKIAUSER",
        "s3cr3t",
    )
    assert found["session"]["AWS_ACCESS_KEY_ID"] is None
    assert found["session"]["AWS_SESSION_TOKEN"] == "a-session"
    assert found["plain"]["AWS_ACCESS_KEY_ID"] is None


async def test_a_function_posts_to_its_own_connection_with_boto3(hotpool_stack):
    stack = await hotpool_stack(port=free_port())
    await deploy(stack, "problems", BOTO3_POSTING, websocket="public")

    async with connect(ws_url(stack, "/ws/problems")) as ws:
        await ws.send(json.dumps({"action": "generateProblem"}))
        got = [await asyncio.wait_for(ws.recv(), 30) for _ in range(3)]

    assert got[:2] == ["progress 1/2", "progress 2/2"]
    answer = {"result": "done", "ip": "127.0.0.1", "unknown": "NotFoundException"}
    assert json.loads(got[2]) == answer
