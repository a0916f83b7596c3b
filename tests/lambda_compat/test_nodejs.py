"""The Node.js runtime on Node code nobody here wrote (node_apps.py): Serverless Framework
templates (CommonJS async; ES modules with a callback), node-lambda's callback sample, and
Express on serverless-http over the /fn/ route (API Gateway HTTP API events, payload 2.0)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import pytest

from tests.lambda_compat import node_apps
from tests.lambda_compat.events import generate_event
from tests.lambda_compat.harness import deploy, invoke, off_loop, record

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH (apt install nodejs)"),
]
# Lambda's Node runtime's text line: <time>\t<request id>\t<LEVEL>\t<message>
NODE_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(scope="module")
def http_api_event() -> dict:
    return generate_event("apigateway", "http-api-proxy", path="hello", method="GET")


async def test_serverless_aws_nodejs_template_echoes_sams_event(hotpool_stack, http_api_event):
    stack = await hotpool_stack()
    await deploy(stack, await off_loop(node_apps.serverless_nodejs))
    resp, body = await invoke(stack, "sls-nodejs", http_api_event)
    assert resp.status == 200, body
    assert body["statusCode"] == 200
    message = json.loads(body["body"])
    assert message["message"].startswith("Go Serverless v1.0!")
    assert message["input"] == http_api_event
    # the same function over the web route: its statusCode and body become the answer
    web = await stack.client.get("/fn/sls-nodejs/anything?x=1")
    assert web.status == 200
    assert json.loads(await web.text())["input"]["rawQueryString"] == "x=1"


async def test_serverless_ecma_script_template_runs_as_es_modules_with_a_callback(hotpool_stack):
    stack = await hotpool_stack()
    app = await off_loop(node_apps.serverless_ecma_script)
    await deploy(stack, app)
    resp, body = await invoke(stack, "sls-esm", {"from": "test"})
    assert resp.status == 200, body
    assert body == {
        "message": "Go Serverless Webpack (Ecma Script) v1.0! First module!",
        "event": {"from": "test"},
    }
    # its second function, as its serverless.yml routes it (httpApi GET /second)
    await deploy(stack, dataclasses.replace(app, name="sls-esm-2", handler="second.hello"))
    web = await stack.client.get("/fn/sls-esm-2/second")
    assert web.status == 200
    assert json.loads(await web.text())["message"].endswith("Second module!")


async def test_node_lambdas_callback_sample_logs_in_lambdas_node_format(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(stack, await off_loop(node_apps.node_lambda_sample))
    resp, body = await invoke(stack, "node-lambda", {"key": "value"})
    assert resp.status == 200 and body is None  # callback(null): no result
    request_id = resp.headers["X-Hotpool-Request-Id"]
    rec = await record(stack, "node-lambda", request_id)
    line = rf"^{NODE_TIME}\t{re.escape(request_id)}\tINFO\tRunning index.handler$"
    assert re.search(line, rec["stdout"], re.M), rec["stdout"]
    assert re.search(r"\tINFO\tevent { key: 'value' }$", rec["stdout"], re.M)


async def test_an_express_app_on_serverless_http_over_the_web_route(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(stack, await off_loop(node_apps.express_app))
    resp = await stack.client.get("/fn/express/items/7?q=x")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"id": "7", "q": "x"}
    resp = await stack.client.post("/fn/express/echo", json={"name": "ü"})
    assert (resp.status, resp.headers["X-App"]) == (201, "express")
    assert await resp.json() == {"got": {"name": "ü"}}
    resp = await stack.client.get("/fn/express/cookie", headers={"Cookie": "a=1"})
    assert await resp.text() == "a=1"
    assert resp.cookies["seen"].value == "yes"
    resp = await stack.client.get("/fn/express/nowhere")
    assert resp.status == 404  # Express's own 404
