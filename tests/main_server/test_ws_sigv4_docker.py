"""In a Docker container (the production backend) a WebSocket function finds boto3 in the
runtime, and boto3 resolves the AWS credentials, region and endpoint hotpool put into its env
for the @connections API (the process backend's end-to-end test posts with them)."""

from __future__ import annotations

import pytest

from hotpool.main_server.state import WS_TOKENS
from hotpool.shared.ws_token import access_key_id
from tests.helpers import handler_zip

pytestmark = pytest.mark.integration

RESOLVED = handler_zip(
    """
    session = boto3.session.Session()
    credentials = session.get_credentials().get_frozen_credentials()
    client = session.client(
        "apigatewaymanagementapi", endpoint_url=os.environ["HOTPOOL_CONNECTIONS_URL"]
    )
    return {
        "access_key": credentials.access_key,
        "secret": credentials.secret_key,
        "region": client.meta.region_name,
        "endpoint": client.meta.endpoint_url,
        "boto3_from": boto3.__file__,
    }
    """,
    prelude="import os\nimport boto3, boto3.session",
)


@pytest.fixture
def stack_backend() -> str:
    return "docker"


async def test_boto3_in_the_container_resolves_the_functions_credentials(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("chat", RESOLVED, websocket="key")).status == 201

    resp = await stack.invoke("chat", {})
    assert resp.status == 200, await resp.text()
    resolved = await resp.json()

    token = await stack.client.app[WS_TOKENS].token("chat")
    assert (resolved["access_key"], resolved["secret"]) == (access_key_id(token), token)
    assert resolved["region"] == stack.settings.function_region
    assert resolved["endpoint"] == stack.settings.effective_connections_url
    assert resolved["boto3_from"].startswith("/var/runtime/provided/")
