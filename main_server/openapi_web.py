"""The OpenAPI description of the web route, ``ANY /fn/{function}/{path}`` (main_server.web).

Its answers are the function's own (any status, any content), so the document describes
hotpool's part: who may call, the errors hotpool gives before and after the function, and the
headers it adds.
"""

from __future__ import annotations

from hotpool.main_server.openapi_schemas import Schema, error_ref, function_param, json_content

# the methods the route serves, as documented ("*" in aiohttp's table)
WEB_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _operation(method: str, root: bool) -> Schema:
    hotpool_headers = {
        "X-Hotpool-Request-Id": {"$ref": "#/components/headers/RequestId"},
        "X-Hotpool-Cold-Start": {"$ref": "#/components/headers/ColdStart"},
        "X-Hotpool-Duration-Ms": {"$ref": "#/components/headers/DurationMs"},
    }
    bad_gateway = json_content(
        {
            "type": "object",
            "properties": {"message": {"type": "string", "enum": ["Internal Server Error"]}},
            "required": ["message"],
        }
    )
    operation: Schema = {
        "operationId": f"web{method.capitalize()}{'Root' if root else ''}",
        "summary": "Call a function as its own web app (a Lambda function URL)",
        "description": "The request becomes an API Gateway event of the function's "
        "`http_payload` (2.0 by default, or 1.0) and the handler's result the response: "
        "`statusCode`, `headers`, `multiValueHeaders`, `cookies`, `body`, `isBase64Encoded`; "
        "in 2.0 a result without `statusCode` is a 200 JSON response of it. "
        "`http=key` functions need a key with `invoke` on their namespace; `http=public` "
        "ones none (a per-function rate applies); `http=off` ones are a 404. An OPTIONS "
        "preflight of a function with `cors` is answered without calling it.",
        # a public function needs no key
        "security": [{"bearerAuth": []}, {}],
        "responses": {
            "default": {
                "description": "The function's own response.",
                "headers": hotpool_headers,
                "content": {"*/*": {"schema": {}}},
            },
            "400": error_ref(400),
            "401": error_ref(401),
            "403": error_ref(403),
            "404": error_ref(404),
            "408": {"description": "The request body did not arrive in time."},
            "413": error_ref(413),
            "429": error_ref(429),
            "502": {
                "description": "The function failed, timed out or returned a result that is "
                "not a response; the details are in its execution record.",
                "content": bad_gateway,
            },
            "503": error_ref(503),
        },
    }
    if method not in ("get", "head", "options", "delete"):
        operation["requestBody"] = {
            "required": False,
            "description": "Any body up to the event limit (6 MB by default): text types "
            "reach the function as text, others base64-encoded.",
            "content": {"*/*": {"schema": {}}},
        }
    return operation


def web_paths() -> dict[str, Schema]:
    function = function_param()
    path = {
        "name": "path",
        "in": "path",
        "required": True,
        "description": "The path the app sees (after `/fn/{function}`).",
        "schema": {"type": "string"},
    }
    return {
        "/fn/{function}": {
            "parameters": [function],
            **{method: _operation(method, True) for method in WEB_METHODS},
        },
        "/fn/{function}/{path}": {
            "parameters": [function, path],
            **{method: _operation(method, False) for method in WEB_METHODS},
        },
    }
