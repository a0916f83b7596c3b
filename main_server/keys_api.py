"""The API-key endpoints (admin keys only): create, list, revoke."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hotpool.main_server.auth import AUTHENTICATOR, PRINCIPAL
from hotpool.shared.auth import ALL_NAMESPACES, Principal, parse_scopes, validate_namespaces
from hotpool.shared.errors import Forbidden, InvalidRequest, NotFound
from hotpool.shared.http import json_response, read_json
from hotpool.shared.models import qualify, validate_name

routes = web.RouteTableDef()


def _admin(request: web.Request) -> Principal:
    principal = request[PRINCIPAL]
    if not principal.is_admin:
        raise Forbidden("managing keys needs an admin key")
    return principal


def _visible(principal: Principal, namespaces: list[str]) -> bool:
    return ALL_NAMESPACES in principal.namespaces or all(
        ns in principal.namespaces for ns in namespaces
    )


def _field(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequest(f"{name} must be a {kind.__name__}")
    return value


def _namespaces(body: dict[str, Any]) -> list[str]:
    """The key's namespaces: ``namespaces`` or ``namespace`` (one of them), each valid, once."""
    if "namespaces" in body and "namespace" in body:
        raise InvalidRequest("give either namespace or namespaces, not both")
    if "namespaces" not in body:
        namespace = body.get("namespace", "default")
        if not isinstance(namespace, str):
            raise InvalidRequest("namespace must be a string")
        return validate_namespaces([namespace], "namespace")
    namespaces = body["namespaces"]
    if not isinstance(namespaces, list) or not all(isinstance(ns, str) for ns in namespaces):
        raise InvalidRequest("namespaces must be a list of strings")
    return validate_namespaces(namespaces)


def _scopes_and_function(body: dict[str, Any], namespaces: list[str]) -> tuple[str, str | None]:
    """The key's scopes and, for a key limited to one function, its qualified name."""
    scopes = body.get("scopes", "")
    if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes):
        scopes = ",".join(scopes)
    if not isinstance(scopes, str):
        raise InvalidRequest("scopes must be a string like 'deploy,invoke' or a list")
    function = _field(body, "function", str)
    if function is not None:
        if len(namespaces) != 1 or namespaces[0] == ALL_NAMESPACES:
            raise InvalidRequest("a function key needs exactly one namespace")
        function = qualify(namespaces[0], validate_name(function))
        # refused rather than narrowed: the admin must not get a key other than the one asked for
        if scopes and parse_scopes(scopes) != {"invoke"}:
            raise InvalidRequest("scopes of a function key can only be 'invoke' (or left out)")
        scopes = "invoke"
    return scopes, function


@routes.post("/v1/keys")
async def create_key(request: web.Request) -> web.Response:
    """Body: {"namespaces": [..] | "namespace": "..", "scopes": "deploy,invoke" | [..],
    "function": name (optional: a key that may only invoke that function),
    "description": "..", "rate_per_s": number}."""
    principal = _admin(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = set(body) - {"namespaces", "namespace", "scopes", "function", "description",
                           "rate_per_s"}  # fmt: skip
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    namespaces = _namespaces(body)
    if not _visible(principal, namespaces):
        raise NotFound("namespace does not exist")
    scopes, function = _scopes_and_function(body, namespaces)
    rate = body.get("rate_per_s")
    # null is refused, not read as "no limit": leaving the field out says that
    if "rate_per_s" in body and (isinstance(rate, bool) or not isinstance(rate, (int, float))):
        raise InvalidRequest("rate_per_s must be a number (leave it out for no per-key limit)")
    key, described = await request.app[AUTHENTICATOR].keystore.create(
        namespaces=namespaces,
        scopes=scopes,
        function=function,
        description=_field(body, "description", str, ""),
        rate_per_s=rate,
    )
    # the only time the key is ever shown
    return json_response({**described, "key": key.token}, status=201)


@routes.get("/v1/keys")
async def list_keys(request: web.Request) -> web.Response:
    principal = _admin(request)
    listed = await request.app[AUTHENTICATOR].keystore.list()
    return json_response({"keys": [k for k in listed if _visible(principal, k["namespaces"])]})


@routes.delete("/v1/keys/{key_id}")
async def revoke_key(request: web.Request) -> web.Response:
    principal = _admin(request)
    key_id = request.match_info["key_id"]
    authenticator = request.app[AUTHENTICATOR]
    listed = {k["key_id"]: k for k in await authenticator.keystore.list()}
    if key_id not in listed or not _visible(principal, listed[key_id]["namespaces"]):
        raise NotFound(f"no active key {key_id[:40]!r}")
    await authenticator.keystore.revoke(key_id)
    await authenticator.revoked(key_id)
    return json_response({"revoked": key_id})
