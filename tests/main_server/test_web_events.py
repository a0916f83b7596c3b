"""The web trigger's event formats and response rules (main_server.web_http_api,
web_rest_api, web_request, web_cors), held to AWS's documented examples."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpool.main_server import web_cors, web_http_api, web_rest_api
from hotpool.main_server.web_request import MalformedResult, WebRequest, is_text
from hotpool.shared.cors import Cors

pytestmark = pytest.mark.unit

# the request payload example of https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html
# (its IAM authorizer left out: hotpool has no IAM; its "time" is not the time of its
# "timeEpoch", so both are taken from timeEpoch here)
FUNCTION_URL_EXAMPLE = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/my/path",
    "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
    "cookies": ["cookie1", "cookie2"],
    "headers": {"header1": "value1", "header2": "value1,value2"},
    "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "<urlid>",
        "authentication": None,
        "domainName": "<url-id>.lambda-url.us-west-2.on.aws",
        "domainPrefix": "<url-id>",
        "http": {
            "method": "POST",
            "path": "/my/path",
            "protocol": "HTTP/1.1",
            "sourceIp": "123.123.123.123",
            "userAgent": "agent",
        },
        "requestId": "id",
        "routeKey": "$default",
        "stage": "$default",
        "time": "04/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390,
    },
    "body": "Hello from client!",
    "isBase64Encoded": False,
}


def _request(**changes) -> WebRequest:
    values = {
        "method": "POST",
        "raw_path": "/my/path",
        "raw_query": "parameter1=value1&parameter1=value2&parameter2=value",
        "headers": (
            ("Header1", "value1"), ("Header2", "value1"), ("header2", "value2"),
            ("Cookie", "cookie1; cookie2"), ("User-Agent", "agent"),
        ),
        "body": b"Hello from client!",
        "source_ip": "123.123.123.123",
        "protocol": "HTTP/1.1",
        "request_id": "id",
        "domain": "<url-id>.lambda-url.us-west-2.on.aws",
        "api_id": "<urlid>",
        "account_id": "123456789012",
        "epoch_ms": 1583348638390,
    }  # fmt: skip
    values.update(changes)
    return WebRequest(**values)


def test_payload_2_0_is_the_function_url_example():
    event = orjson.loads(web_http_api.event(_request()))
    expected = {**FUNCTION_URL_EXAMPLE, "headers": {**FUNCTION_URL_EXAMPLE["headers"]}}
    expected["headers"]["user-agent"] = "agent"
    assert event == expected


def test_payload_2_0_leaves_out_what_a_request_lacks_and_drops_named_headers():
    request = _request(raw_query="", body=b"", headers=(("Authorization", "Bearer hp_x"),))
    event = orjson.loads(web_http_api.event(request, drop=frozenset({"authorization"})))
    assert event["rawQueryString"] == ""
    for absent in ("cookies", "queryStringParameters", "body"):
        assert absent not in event
    assert event["headers"] == {}
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("application/json", True), ("application/json; charset=utf-8", True),
        ("text/html", True), ("application/vnd.api+json", True), ("image/svg+xml", True),
        ("application/xml", True), (None, True), ("image/png", False),
        ("application/octet-stream", False), ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False), ("application/zip", False),
    ],
)  # fmt: skip
def test_which_bodies_travel_as_text(content_type, text):
    assert is_text(content_type) is text


def test_a_text_body_that_is_not_utf8_is_base64_encoded():
    request = _request(body=b"\xff\xfe", headers=(("Content-Type", "text/plain"),))
    event = orjson.loads(web_http_api.event(request))
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe"


@given(st.binary(min_size=1, max_size=200))
def test_any_binary_body_comes_back_whole(body):
    request = _request(body=body, headers=(("Content-Type", "image/png"),))
    for fmt in (web_http_api, web_rest_api):
        event = orjson.loads(fmt.event(request))
        assert event["isBase64Encoded"] is True
        assert base64.b64decode(event["body"]) == body


def test_payload_1_0_keeps_names_last_values_and_every_value():
    request = _request(raw_path="/items/a%20b", raw_query="q=1&q=2&e=")
    event = orjson.loads(web_rest_api.event(request))
    assert event["resource"] == "/{proxy+}"
    assert event["path"] == "/items/a%20b"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"proxy": "items/a b"}
    assert event["headers"]["Header2"] == "value1"
    assert event["headers"]["header2"] == "value2"
    assert event["multiValueHeaders"]["Header1"] == ["value1"]
    assert event["headers"]["Cookie"] == "cookie1; cookie2"
    assert event["queryStringParameters"] == {"q": "2", "e": ""}
    assert event["multiValueQueryStringParameters"] == {"q": ["1", "2"], "e": [""]}
    assert event["body"] == "Hello from client!"
    context = event["requestContext"]
    assert context["requestTime"] == "04/Mar/2020:19:03:58 +0000"
    assert context["requestTimeEpoch"] == 1583348638390
    assert context["identity"]["sourceIp"] == "123.123.123.123"
    assert context["identity"]["userAgent"] == "agent"
    assert context["resourcePath"] == "/{proxy+}"


def test_payload_1_0_of_the_root_has_no_proxy_and_nulls():
    event = orjson.loads(web_rest_api.event(_request(raw_path="/", raw_query="", body=b"")))
    assert event["resource"] == "/"
    assert event["pathParameters"] is None
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["body"] is None


# the response examples of the function URL documentation: (function output, status, headers,
# body the client sees)
DOCUMENTED_RESPONSES = [
    ("Hello, world!", 200, {"Content-Type": "application/json"}, b'"Hello, world!"'),
    ({"message": "Hello, world!"}, 200, {"Content-Type": "application/json"},
     b'{"message":"Hello, world!"}'),
    ({"statusCode": 201,
      "headers": {"Content-Type": "application/json", "My-Custom-Header": "Custom Value"},
      "body": '{"message": "Hello, world!"}', "isBase64Encoded": False},
     201, {"Content-Type": "application/json", "My-Custom-Header": "Custom Value"},
     b'{"message": "Hello, world!"}'),
]  # fmt: skip


@pytest.mark.parametrize(("result", "status", "headers", "body"), DOCUMENTED_RESPONSES)
def test_documented_function_url_responses(result, status, headers, body):
    out = web_http_api.response(result, orjson.dumps(result))
    assert out.status == status
    assert dict(out.headers) == headers
    assert out.body == body


def test_cookies_become_set_cookie_headers():
    result = {"statusCode": 201, "body": "x",
              "cookies": ["Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT",
                          "Cookie_2=Value2; Max-Age=78000"]}  # fmt: skip
    out = web_http_api.response(result, b"")
    assert out.headers.getall("Set-Cookie") == result["cookies"]


def test_multi_value_headers_win_over_headers_of_the_same_name():
    result = {"statusCode": 200, "headers": {"X-A": "single", "X-B": "b"},
              "multiValueHeaders": {"x-a": ["1", "2"], "Set-Cookie": ["a=1", "b=2"]}}  # fmt: skip
    for fmt in (web_http_api, web_rest_api):
        out = fmt.response(result, b"")
        assert out.headers.getall("X-A") == ["1", "2"]
        assert out.headers["X-B"] == "b"
        assert out.headers.getall("Set-Cookie") == ["a=1", "b=2"]


def test_a_base64_body_is_decoded_and_framing_headers_are_the_servers():
    result = {"statusCode": 200, "body": base64.b64encode(b"\x89PNG").decode(),
              "isBase64Encoded": True,
              "headers": {"Content-Type": "image/png", "Content-Length": "999",
                          "Transfer-Encoding": "chunked", "X-Num": 5}}  # fmt: skip
    out = web_rest_api.response(result, b"")
    assert out.body == b"\x89PNG"
    assert "Content-Length" not in out.headers and "Transfer-Encoding" not in out.headers
    assert out.headers["X-Num"] == "5"


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "abc"}, {"statusCode": 99}, {"statusCode": 600}, {"statusCode": True},
        {"statusCode": 200, "body": 5}, {"statusCode": 200, "headers": []},
        {"statusCode": 200, "headers": {"X": "a\nb"}}, {"statusCode": 200, "headers": {"X": {}}},
        {"statusCode": 200, "headers": {"bad name": "x"}},
        {"statusCode": 200, "multiValueHeaders": {"X": "not a list"}},
        {"statusCode": 200, "body": "***", "isBase64Encoded": True},
    ],
)  # fmt: skip
def test_malformed_results(result):
    with pytest.raises(MalformedResult):
        web_http_api.response(result, orjson.dumps(result))
    with pytest.raises(MalformedResult):
        web_rest_api.response(result, orjson.dumps(result))


@pytest.mark.parametrize("cookies", ["a=1", ["a\r\nb"], [5]])
def test_malformed_cookies(cookies):
    with pytest.raises(MalformedResult):
        web_http_api.response({"statusCode": 200, "cookies": cookies}, b"")


@pytest.mark.parametrize("result", [None, "text", [1], {"body": "x"}])
def test_a_rest_api_result_needs_a_status_code(result):
    with pytest.raises(MalformedResult):
        web_rest_api.response(result, orjson.dumps(result))


def test_a_numeric_string_status_code_is_accepted_as_api_gateway_does():
    assert web_rest_api.response({"statusCode": "404"}, b"").status == 404


CORS = Cors(
    allow_origins=("https://a.example",), allow_methods=("GET", "POST"),
    allow_headers=("content-type",), expose_headers=("x-total",), max_age_s=60,
    allow_credentials=True,
)  # fmt: skip


def test_a_preflight_of_an_allowed_origin():
    out = web_cors.preflight(CORS, "https://a.example", "post", "Content-Type")
    assert out["Access-Control-Allow-Origin"] == "https://a.example"
    assert out["Access-Control-Allow-Methods"] == "GET, POST"
    assert out["Access-Control-Allow-Headers"] == "content-type"
    assert out["Access-Control-Max-Age"] == "60"
    assert out["Access-Control-Allow-Credentials"] == "true"
    assert out["Vary"] == "Origin"


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [("https://b.example", "GET", None), ("https://a.example", "DELETE", None),
     ("https://a.example", "GET", "x-other")],
)  # fmt: skip
def test_a_preflight_out_of_the_rules_gets_no_cors_headers(origin, method, headers):
    assert not web_cors.preflight(CORS, origin, method, headers)


def test_the_configured_headers_replace_the_functions_own():
    from multidict import CIMultiDict

    headers = CIMultiDict({"Access-Control-Allow-Origin": "*", "X": "1"})
    web_cors.apply(CORS, "https://a.example", headers)
    assert headers.getall("Access-Control-Allow-Origin") == ["https://a.example"]
    assert headers["Access-Control-Expose-Headers"] == "x-total"
    other = CIMultiDict({"Access-Control-Allow-Origin": "*"})
    web_cors.apply(CORS, "https://evil.example", other)
    assert "Access-Control-Allow-Origin" not in other


def test_is_preflight_needs_origin_and_requested_method():
    assert web_cors.is_preflight("OPTIONS", "https://a", "GET")
    assert not web_cors.is_preflight("OPTIONS", None, "GET")
    assert not web_cors.is_preflight("OPTIONS", "https://a", None)
    assert not web_cors.is_preflight("GET", "https://a", "GET")
