"""The web apps' adapters take `sam local generate-event`'s API Gateway events via /invoke.

The same apps as test_web.py, without the web route: SAM's HTTP API event (payload 2.0) or
REST API proxy event (payload 1.0), as API Gateway would send them, in; the adapter's
{statusCode, headers, body, isBase64Encoded} out.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.lambda_compat.events import sam_event
from tests.lambda_compat.harness import deploy, invoke
from tests.lambda_compat.packages import App
from tests.lambda_compat.webapps import PIXEL_PNG, WEB_APPS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=sorted(WEB_APPS))
def web_app(request) -> App:
    return WEB_APPS[request.param]()


async def api_event(app: App, path: str, method: str = "GET", body: str = "") -> dict:
    """SAM's event of the app's payload format for ``method path``."""
    if app.settings.get("http_payload") == "1.0":
        event = await sam_event("apigateway", "aws-proxy", path=path, method=method, body=body)
    else:
        event = await sam_event("apigateway", "http-api-proxy", path=path, method=method, body=body)
    return event


def body_of(answer: dict) -> bytes:
    body = answer.get("body") or ""
    return base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()


async def test_adapters_answer_sams_api_gateway_events(hotpool_stack, web_app):
    stack = await hotpool_stack()
    await deploy(stack, web_app)

    resp, answer = await invoke(stack, web_app.name, await api_event(web_app, "items/5"))
    assert resp.status == 200, answer
    assert answer["statusCode"] == 200, answer
    assert json.loads(body_of(answer))["item_id"] == 5

    resp, answer = await invoke(stack, web_app.name, await api_event(web_app, "image.png"))
    assert answer["statusCode"] == 200, answer
    assert answer["isBase64Encoded"] is True
    assert body_of(answer) == PIXEL_PNG

    posted = await api_event(web_app, "echo", "POST", body='{"sam": "event"}')
    headers = posted["headers"]
    headers["content-type" if "version" in posted else "Content-Type"] = "application/json"
    if "multiValueHeaders" in posted:
        posted["multiValueHeaders"]["Content-Type"] = ["application/json"]
    resp, answer = await invoke(stack, web_app.name, posted)
    assert answer["statusCode"] == 200, answer
    assert json.loads(body_of(answer)) == {"received": {"sam": "event"}}


def with_header(event: dict, name: str, value: str) -> dict:
    """``event`` carrying one more request header, where its payload format keeps them."""
    if "version" in event:  # 2.0: lower-case names, cookies apart
        if name.lower() == "cookie":
            event["cookies"] = value.split("; ")
        else:
            event["headers"][name.lower()] = value
    else:
        event["headers"][name] = value
        event.setdefault("multiValueHeaders", {})[name] = [value]
    return event


def set_cookies(answer: dict) -> list[str]:
    """The Set-Cookie values of an answer, wherever its payload format puts them."""
    cookies = list(answer.get("cookies") or [])
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        if name.lower() == "set-cookie":
            cookies.extend(values)
    for name, value in (answer.get("headers") or {}).items():
        if name.lower() == "set-cookie":
            cookies.append(value)
    return cookies


async def test_adapters_handle_cookies_forms_and_their_own_404(hotpool_stack, web_app):
    stack = await hotpool_stack()
    await deploy(stack, web_app)

    _, answer = await invoke(stack, web_app.name, await api_event(web_app, "cookies/set"))
    assert answer["statusCode"] == 200, answer
    assert any(c.strip().startswith("flavour=oatmeal") for c in set_cookies(answer)), answer

    event = with_header(await api_event(web_app, "cookies/get"), "Cookie", "flavour=oatmeal; x=1")
    _, answer = await invoke(stack, web_app.name, event)
    assert json.loads(body_of(answer)) == {"flavour": "oatmeal"}, answer

    form = await api_event(web_app, "form", "POST", body="name=Ada+Lovelace+%26+co")
    form = with_header(form, "Content-Type", "application/x-www-form-urlencoded")
    _, answer = await invoke(stack, web_app.name, form)
    assert json.loads(body_of(answer)) == {"name": "Ada Lovelace & co"}, answer

    _, answer = await invoke(stack, web_app.name, await api_event(web_app, "no/such/page"))
    assert answer["statusCode"] == 404, answer
