"""The OpenAPI description of the API keys' routes (``main_server.keys_api``)."""

from __future__ import annotations

from hotpool.main_server.openapi_schemas import Schema, answer, json_content, ref, responses


def key_paths() -> dict[str, Schema]:
    """The API keys' routes (main_server.keys_api): create, list, revoke."""
    return {
        "/v1/keys": {
            "post": {
                "operationId": "createKey",
                "summary": "Create an API key (admin); its secret is shown only here",
                "requestBody": {"required": True, "content": json_content(ref("KeyRequest"))},
                "responses": responses(
                    {201: answer("The new key.", ref("NewKey"))}, 400, 403, 404, 413
                ),
            },
            "get": {
                "operationId": "listKeys",
                "summary": "Every key the admin key may see (admin)",
                "responses": responses({200: answer("The keys.", ref("KeyList"))}, 403),
            },
        },
        "/v1/keys/{key_id}": {
            "delete": {
                "operationId": "revokeKey",
                "summary": "Revoke a key (admin)",
                "parameters": [
                    {
                        "name": "key_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": responses({200: answer("The revoked key.", ref("Revoked"))}, 403, 404),
            },
        },
    }
