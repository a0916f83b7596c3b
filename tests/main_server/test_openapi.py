"""The OpenAPI document describes exactly the routes the app serves, and is valid OpenAPI."""

from __future__ import annotations

import re

import aiohttp
import pytest
from openapi_spec_validator import validate

from hotpool.main_server.app import create_app
from hotpool.main_server.openapi import openapi_document
from hotpool.main_server.openapi_schemas import NAME_PATTERN
from hotpool.main_server.openapi_web import WEB_METHODS
from hotpool.shared.models import NAME_RE, FunctionConfig
from hotpool.shared.settings import Settings
from tests.fakes import ECHO_V1

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _served(tmp_path) -> set[tuple[str, str]]:
    app = create_app(Settings.from_env({}, state_dir=tmp_path))
    served = set()
    for route in app.router.routes():
        if route.method == "*":  # the web route: every method
            assert route.resource is not None
            served.update((m.upper(), route.resource.canonical) for m in WEB_METHODS)
            continue
        # aiohttp adds a HEAD route for every GET; OPTIONS would be CORS plumbing
        if route.method in ("HEAD", "OPTIONS"):
            continue
        assert route.resource is not None
        served.add((route.method, route.resource.canonical))
    return served


def _documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


@pytest.mark.unit
def test_every_served_route_is_documented_and_every_documented_one_is_served(tmp_path):
    served = _served(tmp_path)
    documented = _documented()
    assert served - documented == set(), "routes the OpenAPI document does not describe"
    assert documented - served == set(), "documented routes the app does not serve"
    assert ("POST", "/v1/functions/{name}/invoke") in served
    assert ("PATCH", "/fn/{function}/{path}") in served


@pytest.mark.unit
def test_the_document_is_valid_openapi():
    validate(openapi_document())


@pytest.mark.unit
def test_only_the_probes_are_open():
    document = openapi_document()
    assert document["security"] == [{"bearerAuth": []}]
    open_operations = {
        (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and operation.get("security") == []
    }
    assert open_operations == {("get", "/healthz"), ("get", "/readyz")}


@pytest.mark.unit
@pytest.mark.parametrize(
    "name", ["a", "hello-world_2", "a" * 63, "A", "1a", "a" * 64, "a.b", "a\n", "", "é"]
)
def test_the_name_pattern_is_the_servers(name):
    documented = re.search(NAME_PATTERN.replace("$", r"\Z"), name) is not None
    assert documented == (NAME_RE.match(name) is not None)


@pytest.mark.unit
def test_every_limited_operation_documents_429_with_retry_after():
    document = openapi_document()
    retry = document["components"]["responses"]["E429"]["headers"]["Retry-After"]
    assert retry["required"] is True
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS and path not in ("/healthz", "/readyz"):
                assert "429" in operation["responses"], (method, path)
                assert "401" in operation["responses"], (method, path)


@pytest.mark.integration
async def test_openapi_json_needs_a_key(hotpool_stack):
    stack = await hotpool_stack()
    url = stack.client.make_url("/v1/openapi.json")
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(url) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "Unauthorized"
    resp = await stack.client.get("/v1/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == openapi_document()


@pytest.mark.unit
def test_every_function_setting_is_a_documented_deploy_parameter_and_field():
    # image_id is the pin hotpool sets at deploy, never a parameter
    settings = set(FunctionConfig().to_dict()) - {"image_id"}
    deploy = openapi_document()["paths"]["/v1/functions/{name}"]["put"]
    assert {p["name"] for p in deploy["parameters"]} == settings
    form = deploy["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert set(form) == settings | {"code"}
    function = openapi_document()["components"]["schemas"]["Function"]
    assert set(function["properties"]) == set(ECHO_V1.to_dict())
    assert {"async_retries", "max_event_age_s", "on_success", "on_failure"} <= settings


@pytest.mark.unit
def test_the_asynchronous_invoke_is_described():
    invoke = openapi_document()["paths"]["/v1/functions/{name}/invoke"]["post"]
    inputs = {(p["in"], p["name"]) for p in invoke["parameters"]}
    assert inputs == {
        ("header", "X-Hotpool-Invocation-Type"),
        ("header", "X-Amz-Invocation-Type"),
        ("header", "Idempotency-Key"),
        ("query", "async"),
    }
    accepted = invoke["responses"]["202"]
    assert accepted["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Accepted"
    }
    assert {"X-Hotpool-Request-Id", "Location"} <= set(accepted["headers"])
    kind = re.compile(invoke["parameters"][0]["schema"]["pattern"])
    assert [bool(kind.match(v)) for v in ("Event", "eVENT", "RequestResponse", "DryRun")] == [
        True,
        True,
        True,
        False,
    ]
