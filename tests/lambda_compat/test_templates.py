"""Project templates of SAM CLI and the Serverless Framework, invoked with SAM's sample events.

The handlers are the files `sam init` and `serverless create` write, unchanged; the events
come from `sam local generate-event`'s own library. Two of them name their handler by its
folder (`hello_world/app.lambda_handler`, `src/handler.hello`), as SAM projects deployed
whole and Serverless services do.
"""

from __future__ import annotations

import json

import pytest

from tests.lambda_compat import apps
from tests.lambda_compat.events import generate_event
from tests.lambda_compat.harness import deploy, invoke

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxy_event() -> dict:
    return generate_event("apigateway", "aws-proxy", path="hello", method="GET")


@pytest.fixture(scope="module")
def http_api_event() -> dict:
    return generate_event("apigateway", "http-api-proxy", path="hello", method="GET")


@pytest.fixture(scope="module")
def scheduled_event() -> dict:
    return generate_event("cloudwatch", "scheduled-event", rule="Nightly")


@pytest.fixture(scope="module")
def templates() -> dict[str, apps.App]:
    builders = (
        apps.sam_hello_world, apps.sam_hello_world_project, apps.serverless_python3,
        apps.serverless_python3_in_src, apps.serverless_python_docker,
    )  # fmt: skip
    return {app.name: app for app in (build() for build in builders)}


async def test_sam_init_hello_world_answers_the_rest_api_event(
    hotpool_stack, templates, proxy_event
):
    stack = await hotpool_stack()
    await deploy(stack, templates["sam-hello"])
    resp, body = await invoke(stack, "sam-hello", proxy_event)
    assert resp.status == 200, body
    assert body["statusCode"] == 200
    assert json.loads(body["body"]) == {"message": "hello world"}


async def test_sam_project_deployed_whole_with_a_folder_handler(
    hotpool_stack, templates, proxy_event
):
    stack = await hotpool_stack()
    await deploy(stack, templates["sam-project"])
    resp, body = await invoke(stack, "sam-project", proxy_event)
    assert resp.status == 200, body
    assert json.loads(body["body"]) == {"message": "hello world"}


async def test_serverless_create_aws_python3_echoes_the_http_api_event(
    hotpool_stack, templates, http_api_event
):
    stack = await hotpool_stack()
    await deploy(stack, templates["sls-python3"])
    resp, body = await invoke(stack, "sls-python3", http_api_event)
    assert resp.status == 200, body
    answer = json.loads(body["body"])
    assert answer["message"].startswith("Go Serverless")
    assert answer["input"] == http_api_event


async def test_serverless_handler_under_src_takes_a_scheduled_event(
    hotpool_stack, templates, scheduled_event
):
    stack = await hotpool_stack()
    await deploy(stack, templates["sls-src"])
    resp, body = await invoke(stack, "sls-src", scheduled_event)
    assert resp.status == 200, body
    assert json.loads(body["body"])["input"]["resources"] == [
        "arn:aws:events:us-east-1:123456789012:rule/Nightly"
    ]


async def test_serverless_create_aws_python_docker_app(hotpool_stack, templates, scheduled_event):
    stack = await hotpool_stack()
    await deploy(stack, templates["sls-docker"])
    resp, body = await invoke(stack, "sls-docker", scheduled_event)
    assert resp.status == 200, body
    assert json.loads(body["body"])["message"].startswith("Hello, world!")
