"""Project templates of SAM CLI, the Serverless Framework and Chalice, with SAM's sample events.

The handlers are the files `sam init`, `serverless create` and `chalice new-project` write,
unchanged; the events come from `sam local generate-event`'s own library. Two of them name
their handler by its folder (`hello_world/app.lambda_handler`, `src/handler.hello`), as SAM
projects deployed whole and Serverless services do.
"""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from tests.lambda_compat import apps
from tests.lambda_compat.events import generate_event, sam_event
from tests.lambda_compat.harness import deploy, invoke, off_loop, output, record
from tests.lambda_compat.packages import App, zip_package

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
    built = {app.name: app for app in (build() for build in builders)}
    built["chalice-rest"] = apps.chalice_app("0000-rest-api", "chalice-rest", "app.app")
    built["chalice-s3"] = apps.chalice_app("0002-s3-event-handler", "chalice-s3", "app.s3_handler")
    built["chalice-fn"] = apps.chalice_app("0007-lambda-only", "chalice-fn", "app.second_function")
    return built


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


async def test_chalice_rest_api_routes_sams_proxy_event(hotpool_stack, templates):
    stack = await hotpool_stack()
    await deploy(stack, templates["chalice-rest"])
    # Chalice routes on API Gateway's resource path, as its REST API would send it
    event = await sam_event("apigateway", "aws-proxy", resource="/", path="", method="GET", body="")
    resp, body = await invoke(stack, "chalice-rest", event)
    assert resp.status == 200, body
    assert body["statusCode"] == 200, body
    assert json.loads(body["body"]) == {"hello": "world"}


async def test_chalice_s3_event_handler_logs_through_the_app_logger(hotpool_stack, templates):
    stack = await hotpool_stack()
    await deploy(stack, templates["chalice-s3"])
    event = await sam_event("s3", "put", bucket="uploads", key="a/b.txt")
    resp, body = await invoke(stack, "chalice-s3", event)
    assert resp.status == 200, body
    text = output(await record(stack, "chalice-s3", resp.headers["X-Hotpool-Request-Id"]))
    assert "Received event for bucket: uploads, key: a/b.txt" in text, text


async def test_chalice_lambda_only_function(hotpool_stack, templates):
    stack = await hotpool_stack()
    await deploy(stack, templates["chalice-fn"])
    resp, body = await invoke(stack, "chalice-fn", {})
    assert (resp.status, body) == (200, {"hello": "world2"})


async def test_a_package_missing_its_dependency_fails_in_lambdas_error_shape(hotpool_stack):
    """serverless-wsgi's handler deployed without Flask (the user forgot requirements.txt):
    the import fails at the cold start, and the caller learns which module is missing."""
    files = {"api.py": b"from flask import Flask\napp = Flask(__name__)\n"}
    app = await off_loop(apps.serverless_wsgi, "no-flask", files)
    app = App(app.name, app.handler, zip_package(_without_site(app.code)))
    stack = await hotpool_stack()
    await deploy(stack, app)
    resp, body = await invoke(stack, "no-flask", {})
    assert resp.status >= 400, body
    assert body["errorType"] in ("Runtime.ImportModuleError", "ModuleNotFoundError"), body
    assert "werkzeug" in body["errorMessage"]
    assert isinstance(body["stackTrace"], list)
    assert body["requestId"] == resp.headers["X-Hotpool-Request-Id"]
    assert resp.headers["X-Hotpool-Function-Error"]


def _without_site(code: bytes) -> dict[str, bytes]:
    """The package's own files: the plugin's handler and the app, no vendored Flask."""
    with zipfile.ZipFile(io.BytesIO(code)) as zf:
        return {n: zf.read(n) for n in zf.namelist() if "/" not in n}
