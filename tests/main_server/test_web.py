"""``ANY /fn/{function}/{path...}`` end to end over real HTTP, on the embedded stack (process
backend): what the handler receives (payload 2.0 and 1.0), what the client gets back, who may
call, CORS, and the failures a web client sees as 502. curl runs as a second, independent
client (tests/main_server/test_web_curl.py).
"""

from __future__ import annotations

import asyncio
import base64
import json

import orjson
import pytest
from multidict import CIMultiDict

from tests.helpers import handler_zip

pytestmark = pytest.mark.integration

# the event it got, as the body of a 2.0/1.0 response
ECHO = handler_zip(
    """
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(event)}
    """,
    prelude="import json",
)
# returns whatever the event's body (JSON) tells it to
MIRROR = handler_zip("return json.loads(event['body'])", prelude="import json")
# a 1x1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
IMAGE = handler_zip(
    """
    data = base64.b64decode(event["body"]) if event["isBase64Encoded"] else b""
    return {"statusCode": 200, "headers": {"content-type": "image/png"},
            "body": base64.b64encode(data[::-1][::-1]).decode(), "isBase64Encoded": True}
    """,
    prelude="import base64",
)


async def _echo(stack, path: str, **kwargs) -> tuple[object, dict]:
    resp = await stack.client.request(kwargs.pop("method", "GET"), path, **kwargs)
    assert resp.status == 200, await resp.text()
    return resp, json.loads(await resp.read())


async def test_a_get_reaches_the_app_as_a_function_url_event(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("echo", ECHO)).status == 201
    headers = CIMultiDict([("X-Rep", "a"), ("X-Rep", "b"), ("Cookie", "c1=v1; c2=v2")])
    resp, event = await _echo(stack, "/fn/echo/items/5?q=1&q=2&x=%20y", headers=headers)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/items/5"
    assert event["rawQueryString"] == "q=1&q=2&x=%20y"
    assert event["queryStringParameters"] == {"q": "1,2", "x": " y"}
    assert event["headers"]["x-rep"] == "a,b"
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert "cookie" not in event["headers"]
    # the caller's hotpool key never reaches the function
    assert "authorization" not in event["headers"]
    context = event["requestContext"]
    assert context["http"]["method"] == "GET"
    assert context["http"]["path"] == "/items/5"
    assert context["http"]["protocol"] == "HTTP/1.1"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] == resp.headers["X-Hotpool-Request-Id"]
    assert isinstance(context["timeEpoch"], int)
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    # as function URLs add them: adapters build absolute URLs from them
    assert event["headers"]["x-forwarded-proto"] == "http"
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert event["headers"]["x-forwarded-port"] == str(stack.client.server.port)
    assert resp.headers["X-Hotpool-Cold-Start"] == "true"
    assert float(resp.headers["X-Hotpool-Duration-Ms"]) > 0
    records = await stack.records("echo", 1)
    assert records[0]["trigger"] == "web"
    assert records[0]["request_id"] == context["requestId"]


async def test_the_function_root_and_a_namespaced_function(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.client.put(
        "/v1/functions/echo", params={"namespace": "team"}, data=ECHO,
        headers={"Content-Type": "application/zip"},
    )  # fmt: skip
    assert resp.status == 201
    _, event = await _echo(stack, "/fn/team.echo")
    assert event["rawPath"] == "/"
    assert event["requestContext"]["apiId"] == "team.echo"


async def test_payload_1_0_for_rest_api_apps(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("rest", ECHO, http_payload="1.0")).status == 201
    headers = CIMultiDict([("X-Rep", "a"), ("X-Rep", "b"), ("Cookie", "c=1")])
    _, event = await _echo(stack, "/fn/rest/a/b%20c?q=1&q=2", headers=headers)
    assert event["resource"] == "/{proxy+}"
    assert event["path"] == "/a/b%20c"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"proxy": "a/b c"}
    assert event["headers"]["X-Rep"] == "b"
    assert event["multiValueHeaders"]["X-Rep"] == ["a", "b"]
    assert event["headers"]["Cookie"] == "c=1"
    assert event["queryStringParameters"] == {"q": "2"}
    assert event["multiValueQueryStringParameters"] == {"q": ["1", "2"]}
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["body"] is None and event["isBase64Encoded"] is False
    assert event["stageVariables"] is None


async def test_json_and_form_posts(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("echo", ECHO)).status == 201
    _, event = await _echo(stack, "/fn/echo/items", method="POST", json={"name": "ü"})
    assert event["body"] == '{"name": "\\u00fc"}'
    assert event["isBase64Encoded"] is False
    _, event = await _echo(stack, "/fn/echo/form", method="POST", data={"a": "1", "b": "x y"})
    assert event["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"a=1&b=x+y"


async def test_a_binary_request_and_response(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("image", IMAGE)).status == 201
    resp = await stack.client.post("/fn/image/png", data=PNG, headers={"Content-Type": "image/png"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/png"
    assert await resp.read() == PNG


async def test_cookies_headers_and_status_of_the_result(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("mirror", MIRROR)).status == 201
    result = {
        "statusCode": 201,
        "headers": {"X-One": "1", "Content-Type": "text/plain"},
        "multiValueHeaders": {"X-Many": ["a", "b"]},
        "cookies": ["s=1; Path=/", "t=2; Max-Age=60"],
        "body": "created",
    }
    resp = await stack.client.post("/fn/mirror", json=result)
    assert resp.status == 201
    assert await resp.text() == "created"
    assert resp.headers["X-One"] == "1"
    assert resp.headers.getall("X-Many") == ["a", "b"]
    assert resp.headers.getall("Set-Cookie") == ["s=1; Path=/", "t=2; Max-Age=60"]
    assert resp.cookies["s"].value == "1"


async def test_a_result_without_status_code_is_a_json_200_and_the_apps_404_is_kept(
    hotpool_stack,
):
    stack = await hotpool_stack()
    assert (await stack.deploy("mirror", MIRROR)).status == 201
    resp = await stack.client.post("/fn/mirror", json="Hello, world!")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert await resp.read() == b'"Hello, world!"'
    resp = await stack.client.post("/fn/mirror", json={"message": "hi"})
    assert await resp.json() == {"message": "hi"}
    resp = await stack.client.post(
        "/fn/mirror/nope", json={"statusCode": 404, "body": '{"detail":"Not Found"}'}
    )
    assert resp.status == 404
    assert await resp.json() == {"detail": "Not Found"}


async def test_errors_and_malformed_results_are_a_bare_502(hotpool_stack):
    stack = await hotpool_stack()
    failing = handler_zip("raise KeyError('secret detail')")
    assert (await stack.deploy("boom", failing)).status == 201
    assert (await stack.deploy("mirror", MIRROR)).status == 201
    assert (await stack.deploy("rest", MIRROR, http_payload="1.0")).status == 201
    resp = await stack.client.get("/fn/boom/x")
    assert resp.status == 502
    body = await resp.read()
    assert json.loads(body) == {"message": "Internal Server Error"}
    assert b"secret" not in body and b"Traceback" not in body
    assert resp.headers["X-Hotpool-Function-Error"] == "KeyError"
    record = (await stack.records("boom", 1))[0]
    assert record["status"] == "error" and "secret detail" in record["error"]["message"]
    for path, result in [
        ("/fn/mirror", {"statusCode": "abc"}),
        ("/fn/mirror", {"statusCode": 200, "body": {"not": "a string"}}),
        ("/fn/mirror", {"statusCode": 200, "headers": {"X": "a\r\nInjected: 1"}}),
        ("/fn/mirror", {"statusCode": 200, "body": "!!", "isBase64Encoded": True}),
        ("/fn/rest", {"body": "no statusCode"}),
        ("/fn/rest", "a string"),
    ]:
        resp = await stack.client.post(path, json=result)
        assert resp.status == 502, (path, result)
        assert await resp.json() == {"message": "Internal Server Error"}
        assert "Injected" not in resp.headers
    counters = (await (await stack.client.get("/system/status")).json())["counters"]
    assert counters["web_calls"] == 7
    assert counters["web_bad_gateway"] == 7
    assert counters["web_malformed_results"] == 6


async def test_who_may_call_public_key_and_off(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("open", ECHO, http="public")).status == 201
    assert (await stack.deploy("closed", ECHO)).status == 201
    assert (await stack.deploy("dark", ECHO, http="off")).status == 201
    anonymous = {"Authorization": ""}
    # a public function needs no key, and the Authorization header is the app's own
    resp = await stack.client.get("/fn/open/", headers={"Authorization": "Bearer app-jwt"})
    assert resp.status == 200
    event = json.loads(await resp.read())
    assert event["headers"]["authorization"] == "Bearer app-jwt"
    assert event["requestContext"]["accountId"] == "anonymous"
    # key mode: no key is a 401, whether the function exists, is off or is unknown
    for name in ("closed", "dark", "unknown"):
        resp = await stack.client.get(f"/fn/{name}/", headers=anonymous)
        assert resp.status == 401, name
    # with a key: off and unknown are the same 404
    resp = await stack.client.get("/fn/closed/")
    assert resp.status == 200
    bodies = set()
    for name in ("dark", "unknown"):
        resp = await stack.client.get(f"/fn/{name}/")
        assert resp.status == 404, name
        bodies.add((await resp.read()).replace(name.encode(), b"NAME"))
    assert len(bodies) == 1


async def test_a_cors_preflight_is_answered_without_the_function(hotpool_stack):
    stack = await hotpool_stack()
    cors = {
        "allow_origins": ["https://app.example"],
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["content-type", "x-token"],
        "expose_headers": ["x-total"],
        "max_age_s": 300,
    }
    failing = handler_zip("raise RuntimeError('must not run')")
    assert (await stack.deploy("api", failing, cors=json.dumps(cors))).status == 201
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type, X-Token",
        "Authorization": "",  # a browser sends no key with a preflight
    }
    resp = await stack.client.options("/fn/api/items", headers=preflight)
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert resp.headers["Access-Control-Max-Age"] == "300"
    resp = await stack.client.options(
        "/fn/api/items", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    # the function ran for none of them
    listing = await stack.client.get("/v1/functions/api/invocations")
    assert (await listing.json())["invocations"] == []
    # an actual call gets the configured headers, even on a 502
    resp = await stack.client.get("/fn/api/items", headers={"Origin": "https://app.example"})
    assert resp.status == 502
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert resp.headers["Access-Control-Expose-Headers"] == "x-total"


async def test_request_bodies_over_the_limit_are_refused(hotpool_stack):
    stack = await hotpool_stack(max_event_bytes=1000)
    assert (await stack.deploy("echo", ECHO)).status == 201
    resp = await stack.client.post("/fn/echo/", data=b"x" * 1001)
    assert resp.status == 413
    resp = await stack.client.post("/fn/echo/", data=b"x" * 1000)
    assert resp.status == 200
    listing = await stack.client.get("/v1/functions/echo/invocations")
    assert len((await listing.json())["invocations"]) <= 1


async def test_invoke_records_say_sync(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("echo", ECHO)).status == 201
    assert (await stack.invoke("echo", {"x": 1})).status == 200
    assert (await stack.records("echo", 1))[0]["trigger"] == "sync"


async def test_head_and_empty_bodies(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("mirror", MIRROR)).status == 201
    resp = await stack.client.post("/fn/mirror", json={"statusCode": 204})
    assert resp.status == 204
    assert await resp.read() == b""
    # a body sent as octet-stream reaches the function base64-encoded
    resp = await stack.client.post("/fn/mirror", data=orjson.dumps({"statusCode": 200}))
    assert resp.status == 502
    resp = await stack.client.head("/fn/mirror")
    assert resp.status == 502  # no body to read: the handler fails, HEAD shows the status


async def test_a_response_over_the_limit_is_a_502(hotpool_stack):
    stack = await hotpool_stack(max_response_bytes=10_000)
    assert (await stack.deploy("mirror", MIRROR)).status == 201
    resp = await stack.client.post("/fn/mirror", json={"statusCode": 200, "body": "x" * 9_000})
    assert resp.status == 200
    assert len(await resp.read()) == 9_000
    resp = await stack.client.post("/fn/mirror", json={"statusCode": 200, "body": "x" * 11_000})
    assert resp.status == 502
    assert await resp.json() == {"message": "Internal Server Error"}
    assert resp.headers["X-Hotpool-Function-Error"] == "ResponseTooLarge"


async def test_concurrent_web_calls_keep_the_pool_whole(hotpool_stack):
    stack = await hotpool_stack(public_rate_per_s=1e6, public_rate_burst=1_000_000)
    slow = handler_zip("time.sleep(0.05)\nreturn {'statusCode': 200, 'body': 'ok'}",
                       prelude="import time")  # fmt: skip
    assert (await stack.deploy("slow", slow, http="public", max_concurrency=4)).status == 201

    async def call(i: int) -> int:
        resp = await stack.client.get(f"/fn/slow/{i}", headers={"Authorization": ""})
        assert await resp.read() == b"ok"
        return resp.status

    statuses = await asyncio.gather(*(call(i) for i in range(24)))
    assert statuses == [200] * 24
    # every container is back in the pool once the calls are done: none leaked, none leased
    live = stack.live_containers()
    assert 1 <= len(live) <= 4
    await stack.idle_entries("slow", 1, n=len(live))
    assert await stack.leases() == []
