"""Payload format 2.0 (API Gateway HTTP API, Lambda function URLs): the event of a web
request, and the HTTP response of a handler's result.

The rules are those of function URLs
(https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html): header names lower-cased
and repeated headers joined with commas, the Cookie header split into ``cookies``, repeated
query parameters joined with commas, bodies that are not text base64-encoded. A result
without ``statusCode`` (any JSON value) is a 200 ``application/json`` response of that JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from multidict import CIMultiDict

from hotpool.main_server.web_request import (
    MalformedResult,
    WebRequest,
    WebResponse,
    add_headers,
    body_of,
    status_of,
)

VERSION = "2.0"
ROUTE_KEY = "$default"
JSON_TYPE = "application/json"


def event(request: WebRequest, *, drop: frozenset[str] = frozenset()) -> bytes:
    """The 2.0 event of ``request``; headers named (lower-case) in ``drop`` are left out."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        elif lower in drop:
            continue
        elif lower in headers:
            headers[lower] = f"{headers[lower]},{value}"
        else:
            headers[lower] = value
    body, is_base64 = request.body_field(headers.get("content-type"))
    context = {
        "accountId": request.account_id,
        "apiId": request.api_id,
        "authentication": None,
        "domainName": request.domain,
        "domainPrefix": request.domain.partition(".")[0],
        "http": {
            "method": request.method,
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request.request_id,
        "routeKey": ROUTE_KEY,
        "stage": ROUTE_KEY,
        "time": request.request_time(),
        "timeEpoch": request.epoch_ms,
    }
    out: dict[str, Any] = {
        "version": VERSION,
        "routeKey": ROUTE_KEY,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        out["cookies"] = cookies
    out["headers"] = headers
    if request.raw_query:
        query: dict[str, str] = {}
        for name, value in request.query_pairs():
            query[name] = f"{query[name]},{value}" if name in query else value
        out["queryStringParameters"] = query
    out["requestContext"] = context
    if body is not None:
        out["body"] = body
    out["isBase64Encoded"] = is_base64
    return orjson.dumps(out)


def response(result: Any, result_json: bytes) -> WebResponse:
    """The HTTP response of a handler's ``result`` (``result_json`` is its JSON)."""
    if not isinstance(result, Mapping) or "statusCode" not in result:
        # function URLs infer the rest: 200, application/json, the result as the body
        return WebResponse(200, CIMultiDict({"Content-Type": JSON_TYPE}), result_json)
    headers: CIMultiDict[str] = CIMultiDict()
    add_headers(headers, result)
    cookies = result.get("cookies")
    cookies = [] if cookies is None else cookies
    if not isinstance(cookies, list):
        raise MalformedResult("cookies must be a list of strings")
    for cookie in cookies:
        headers.add("Set-Cookie", _cookie(cookie))
    if "Content-Type" not in headers:
        headers["Content-Type"] = JSON_TYPE
    return WebResponse(status_of(result), headers, body_of(result))


def _cookie(cookie: Any) -> str:
    if not isinstance(cookie, str) or "\r" in cookie or "\n" in cookie or "\x00" in cookie:
        raise MalformedResult("each cookie must be one line of text")
    return cookie
