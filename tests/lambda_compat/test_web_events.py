"""The web apps' adapters take `sam local generate-event`'s API Gateway events via /invoke.

The same apps as test_web.py, without the web route: SAM's HTTP API event (payload 2.0) or
REST API proxy event (payload 1.0), as API Gateway would send them, in; the adapter's
{statusCode, headers, body, isBase64Encoded} out.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.lambda_compat.events import generate_event
from tests.lambda_compat.harness import deploy, invoke
from tests.lambda_compat.packages import App
from tests.lambda_compat.webapps import PIXEL_PNG, WEB_APPS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=sorted(WEB_APPS))
def web_app(request) -> App:
    return WEB_APPS[request.param]()


def api_event(app: App, path: str, method: str = "GET", body: str = "") -> dict:
    """SAM's event of the app's payload format for ``method path``."""
    if app.settings.get("http_payload") == "1.0":
        event = generate_event("apigateway", "aws-proxy", path=path, method=method, body=body)
    else:
        event = generate_event("apigateway", "http-api-proxy", path=path, method=method, body=body)
    return event


def body_of(answer: dict) -> bytes:
    body = answer.get("body") or ""
    return base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()


async def test_adapters_answer_sams_api_gateway_events(hotpool_stack, web_app):
    stack = await hotpool_stack()
    await deploy(stack, web_app)

    resp, answer = await invoke(stack, web_app.name, api_event(web_app, "items/5"))
    assert resp.status == 200, answer
    assert answer["statusCode"] == 200, answer
    assert json.loads(body_of(answer))["item_id"] == 5

    resp, answer = await invoke(stack, web_app.name, api_event(web_app, "image.png"))
    assert answer["statusCode"] == 200, answer
    assert answer["isBase64Encoded"] is True
    assert body_of(answer) == PIXEL_PNG

    posted = api_event(web_app, "echo", "POST", body='{"sam": "event"}')
    headers = posted["headers"]
    headers["content-type" if "version" in posted else "Content-Type"] = "application/json"
    if "multiValueHeaders" in posted:
        posted["multiValueHeaders"]["Content-Type"] = ["application/json"]
    resp, answer = await invoke(stack, web_app.name, posted)
    assert answer["statusCode"] == 200, answer
    assert json.loads(body_of(answer)) == {"received": {"sam": "event"}}
