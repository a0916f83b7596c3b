"""The layer endpoints: publish a version, list, read and delete them (``/v1/layers``).

Tenancy and scopes as for functions: ``?namespace=`` picks the namespace, another tenant's
layer is a 404, publishing and deleting need ``deploy``, reading needs ``read``.
"""

from __future__ import annotations

from aiohttp import web

from hotpool.main_server.auth import PRINCIPAL
from hotpool.main_server.request_input import read_limited
from hotpool.main_server.state import FUNCTIONS, LAYERS
from hotpool.shared.errors import InvalidRequest
from hotpool.shared.http import json_response
from hotpool.shared.layer_store import MAX_DESCRIPTION_CHARS
from hotpool.shared.models import validate_name

routes = web.RouteTableDef()

PUBLISH_PARAMS = ("namespace", "description")
MAX_VERSION = 999_999_999  # the largest a function's "name:version" may name


def _namespace(request: web.Request, scope: str) -> str:
    """The namespace a request may act on with ``scope``: another tenant's is a 404."""
    principal = request[PRINCIPAL]
    namespace = principal.namespace(request.query.get("namespace"))
    principal.check(scope, namespace)
    return namespace


def _name(request: web.Request) -> str:
    return validate_name(request.match_info["name"], "layer name")


def _version(request: web.Request) -> int:
    raw = request.match_info["version"]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_VERSION:
        raise InvalidRequest(f"layer version {raw[:20]!r} must be a whole number from 1")
    return int(raw)


@routes.put("/v1/layers/{name}")
async def publish_layer(request: web.Request) -> web.Response:
    """Body: the zip (Content-Type application/zip); query: ``description``."""
    namespace = _namespace(request, "deploy")
    name = _name(request)
    if unknown := sorted(set(request.query) - set(PUBLISH_PARAMS)):
        raise InvalidRequest(
            f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PUBLISH_PARAMS)}"
        )
    description = request.query.get("description", "")
    if len(description) > MAX_DESCRIPTION_CHARS or not description.isprintable():
        raise InvalidRequest(
            f"description must be printable text of at most {MAX_DESCRIPTION_CHARS} characters"
        )
    if request.content_type not in ("application/zip", "application/octet-stream"):
        raise InvalidRequest(
            f"send the layer's zip as Content-Type application/zip; got {request.content_type!r}"
        )
    limit = request.app[FUNCTIONS].package_limit_bytes
    data = await read_limited(request, limit, "the layer package")
    layer = await request.app[LAYERS].publish(namespace, name, data, description)
    return json_response(layer.to_dict(), status=201)


@routes.get("/v1/layers")
async def list_layers(request: web.Request) -> web.Response:
    """The namespace's layers, each as its newest version."""
    namespace = _namespace(request, "read")
    layers = await request.app[LAYERS].latest_of_each(namespace)
    return json_response({"layers": [layer.to_dict() for layer in layers]})


@routes.get("/v1/layers/{name}")
async def get_layer(request: web.Request) -> web.Response:
    """One layer's versions, newest first."""
    namespace = _namespace(request, "read")
    name = _name(request)
    versions = await request.app[LAYERS].versions(namespace, name)
    return json_response(
        {"name": name, "namespace": namespace, "versions": [v.to_dict() for v in versions]}
    )


@routes.get("/v1/layers/{name}/versions/{version}")
async def get_layer_version(request: web.Request) -> web.Response:
    namespace = _namespace(request, "read")
    layer = await request.app[LAYERS].get(namespace, _name(request), _version(request))
    return json_response(layer.to_dict())


@routes.delete("/v1/layers/{name}/versions/{version}")
async def delete_layer_version(request: web.Request) -> web.Response:
    namespace = _namespace(request, "deploy")
    layer = await request.app[LAYERS].delete(namespace, _name(request), _version(request))
    return json_response({"deleted": layer.name, "namespace": namespace, "version": layer.version})
