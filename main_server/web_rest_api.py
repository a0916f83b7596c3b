"""Payload format 1.0 (API Gateway REST API proxy integration): the event of a web request,
and the HTTP response of a handler's result.

The function sits behind one greedy ``/{proxy+}`` resource, as a REST API in front of a
WSGI or ASGI app does: ``headers`` keep the client's names and the last value of each,
``multiValueHeaders`` every value; the query likewise; ``pathParameters.proxy`` is the path
without its leading slash. A result must carry ``statusCode`` (REST APIs answer a result
without one as a malformed proxy response).
(https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

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

PROXY_RESOURCE = "/{proxy+}"
STAGE = "$default"
JSON_TYPE = "application/json"
_IDENTITY_NULLS = (
    "accessKey", "accountId", "caller", "cognitoAuthenticationProvider",
    "cognitoAuthenticationType", "cognitoIdentityId", "cognitoIdentityPoolId", "principalOrgId",
    "user", "userArn",
)  # fmt: skip


def event(request: WebRequest, *, drop: frozenset[str] = frozenset()) -> bytes:
    """The 1.0 event of ``request``; headers named (lower-case) in ``drop`` are left out."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    content_type = user_agent = None
    for name, value in request.headers:
        lower = name.lower()
        if lower in drop:
            continue
        if lower == "content-type":
            content_type = value
        elif lower == "user-agent":
            user_agent = value
        name = str(name)  # a header name may come as multidict's istr, which orjson refuses
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] | None = None
    multi_query: dict[str, list[str]] | None = None
    if request.raw_query:
        query, multi_query = {}, {}
        for name, value in request.query_pairs():
            query[name] = value
            multi_query.setdefault(name, []).append(value)
    proxy = unquote(request.raw_path[1:])
    resource = PROXY_RESOURCE if proxy else "/"
    body, is_base64 = request.body_field(content_type)
    identity: dict[str, Any] = dict.fromkeys(_IDENTITY_NULLS)
    identity["sourceIp"] = request.source_ip
    identity["userAgent"] = user_agent
    out = {
        "resource": resource,
        "path": request.raw_path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": proxy} if proxy else None,
        "stageVariables": None,
        "requestContext": {
            "accountId": request.account_id,
            "apiId": request.api_id,
            "domainName": request.domain,
            "domainPrefix": request.domain.partition(".")[0],
            "extendedRequestId": request.request_id,
            "httpMethod": request.method,
            "identity": identity,
            "path": request.raw_path,
            "protocol": request.protocol,
            "requestId": request.request_id,
            "requestTime": request.request_time(),
            "requestTimeEpoch": request.epoch_ms,
            "resourceId": resource,
            "resourcePath": resource,
            "stage": STAGE,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }
    return orjson.dumps(out)


def response(result: Any, result_json: bytes) -> WebResponse:
    """The HTTP response of a handler's ``result``; MalformedResult without a ``statusCode``."""
    if not isinstance(result, Mapping):
        raise MalformedResult("a REST API (1.0) result must be an object with statusCode")
    if "statusCode" not in result:
        raise MalformedResult("a REST API (1.0) result needs a statusCode")
    headers: CIMultiDict[str] = CIMultiDict()
    add_headers(headers, result)
    if "Content-Type" not in headers:
        headers["Content-Type"] = JSON_TYPE
    return WebResponse(status_of(result), headers, body_of(result))
