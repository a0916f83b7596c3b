"""The layer routes of the OpenAPI document (``main_server.openapi`` merges them in)."""

from __future__ import annotations

from hotpool.main_server.layers_api import MAX_VERSION
from hotpool.main_server.openapi_schemas import (
    NAME_PATTERN,
    Schema,
    answer,
    object_schema,
    query_param,
    ref,
    responses,
)
from hotpool.shared.layer_store import MAX_DESCRIPTION_CHARS

_BINARY = {"type": "string", "format": "binary"}
_NAMESPACE = {"$ref": "#/components/parameters/namespace"}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The layer's name.",
    "schema": {"type": "string", "pattern": NAME_PATTERN},
}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "description": "The layer version's number.",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
}


def layer_schemas() -> dict[str, Schema]:
    """The layer data shapes, by name."""
    layer = object_schema(
        {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "namespace": {"type": "string", "pattern": NAME_PATTERN},
            "version": {"type": "integer", "minimum": 1},
            "code_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "size": {"type": "integer", "minimum": 1, "description": "The zip's bytes."},
            "description": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        }
    )
    return {
        "LayerVersion": layer,
        "LayerList": object_schema({"layers": {"type": "array", "items": ref("LayerVersion")}}),
        "LayerVersions": object_schema(
            {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "versions": {"type": "array", "items": ref("LayerVersion")},
            }
        ),
        "LayerDeleted": object_schema(
            {
                "deleted": {"type": "string"},
                "namespace": {"type": "string"},
                "version": {"type": "integer"},
            }
        ),
    }


def layer_paths() -> dict[str, Schema]:
    """The ``/v1/layers`` routes."""
    version = answer("The layer version.", ref("LayerVersion"))
    return {
        "/v1/layers": {
            "get": {
                "operationId": "listLayers",
                "summary": "The newest version of every layer of the namespace",
                "parameters": [_NAMESPACE],
                "responses": responses(
                    {200: answer("The layers.", ref("LayerList"))}, 400, 403, 404
                ),
            },
        },
        "/v1/layers/{name}": {
            "parameters": [_NAME, _NAMESPACE],
            "put": {
                "operationId": "publishLayer",
                "summary": "Publish a new immutable version of a layer (Lambda's model)",
                "parameters": [
                    query_param(
                        "description",
                        {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS},
                        "What the layer holds.",
                    )
                ],
                "requestBody": {
                    "required": True,
                    "description": "The zip: `python/` at its root goes on `sys.path` (and "
                    "`python/lib/python3.X/site-packages`), unpacked at `/opt` in order of the "
                    "function's `layers`. The limits of code packages apply.",
                    "content": {
                        "application/zip": {"schema": {"type": "string", "format": "binary"}}
                    },
                },
                "responses": responses({201: version}, 400, 403, 404, 413),
            },
            "get": {
                "operationId": "getLayer",
                "summary": "A layer's versions, newest first",
                "responses": responses(
                    {200: answer("The versions.", ref("LayerVersions"))}, 400, 403, 404
                ),
            },
        },
        "/v1/layers/{name}/versions/{version}": {
            "parameters": [_NAME, _VERSION, _NAMESPACE],
            "get": {
                "operationId": "getLayerVersion",
                "summary": "One layer version",
                "responses": responses({200: version}, 400, 403, 404),
            },
            "delete": {
                "operationId": "deleteLayerVersion",
                "summary": "Delete a layer version; functions using it keep running on it",
                "responses": responses(
                    {200: answer("What was deleted.", ref("LayerDeleted"))}, 400, 403, 404
                ),
            },
        },
    }
