"""The container-image part of the OpenAPI document: the deploy parameters of an image
function (``image`` and Lambda's ImageConfig overrides) and the fields a version shows,
its pinned ``image_id`` among them. ``main_server.openapi`` merges these in."""

from __future__ import annotations

from hotpool.main_server.openapi_schemas import Schema, json_content, query_param

_ARGS: Schema = {"type": "array", "items": {"type": "string"}, "maxItems": 32}


def settings_params() -> list[Schema]:
    """The deploy parameters of container-image functions (Docker backend only)."""
    return [
        query_param(
            "image",
            {"type": "string", "maxLength": 255},
            "A Lambda-compatible container image, `[registry/]repository[:tag][@digest]`, "
            "instead of a zip (send no body): one the Managers' Docker daemons hold, in a "
            "repository `HOTPOOL_IMAGE_ALLOW` allows. The version pins the image ID it "
            "resolves to now (`image_id`). No `runtime`, `handler` or `layers` with it.",
        ),
        {
            "name": "image_entrypoint",
            "in": "query",
            "required": False,
            "description": "ImageConfig EntryPoint: overrides the image's ENTRYPOINT.",
            "content": json_content(_ARGS),
        },
        {
            "name": "image_command",
            "in": "query",
            "required": False,
            "description": "ImageConfig Command: overrides the image's CMD (on AWS's base "
            "images, the handler).",
            "content": json_content(_ARGS),
        },
        query_param(
            "image_workdir",
            {"type": "string", "maxLength": 1000},
            "ImageConfig WorkingDirectory: an absolute path in the image.",
        ),
    ]


def function_fields() -> dict[str, Schema]:
    """What a version of an image function shows (empty for zip functions)."""
    string: Schema = {"type": "string"}
    return {
        "image": string,
        "image_id": {
            "type": "string",
            "description": "The image ID (sha256:...) the version runs, fixed at deploy.",
        },
        "image_entrypoint": _ARGS,
        "image_command": _ARGS,
        "image_workdir": string,
    }
