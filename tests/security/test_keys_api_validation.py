"""The keys API refuses what it cannot honour instead of quietly storing something else.

An admin asking for a function key with `deploy` must not get an `invoke` key it did not ask
for; an invalid `namespace` must not vanish because `namespaces` was given too; a namespace
listed twice, or a `rate_per_s` of null, is a mistake to report. Each is a 400 naming the
field, and no key is created.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration

REFUSED = [
    pytest.param(
        {"namespace": "team-a", "function": "only-a", "scopes": "deploy,invoke"},
        "scopes",
        id="function-key-with-deploy",
    ),
    pytest.param(
        {"namespace": "team-a", "function": "only-a", "scopes": ["admin"]},
        "scopes",
        id="function-key-with-admin",
    ),
    pytest.param(
        {"namespace": "Not Valid!", "namespaces": ["team-a"], "scopes": "invoke"},
        "namespace",
        id="invalid-namespace-beside-namespaces",
    ),
    pytest.param(
        {"namespace": "team-b", "namespaces": ["team-a"], "scopes": "invoke"},
        "namespace",
        id="namespace-and-namespaces",
    ),
    pytest.param(
        {"namespaces": ["team-a", "team-a"], "scopes": "invoke"},
        "namespaces",
        id="duplicate-namespaces",
    ),
    pytest.param(
        {"namespace": "team-a", "scopes": "invoke", "rate_per_s": None},
        "rate_per_s",
        id="null-rate",
    ),
]


async def _key_ids(stack) -> set[str]:
    resp = await stack.client.get("/v1/keys")
    assert resp.status == 200, await resp.text()
    return {k["key_id"] for k in (await resp.json())["keys"]}


@pytest.mark.parametrize(("body", "field"), REFUSED)
async def test_a_key_request_it_cannot_honour_is_refused(
    hotpool_stack, body: dict[str, Any], field: str
):
    stack = await hotpool_stack()
    before = await _key_ids(stack)

    resp = await stack.client.post("/v1/keys", json=body)

    text = await resp.text()
    assert resp.status == 400, text
    assert field in (await resp.json())["error"]["message"], text
    assert await _key_ids(stack) == before


async def test_a_function_key_asking_only_for_invoke_is_still_made(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.client.post(
        "/v1/keys", json={"namespace": "team-a", "function": "only-a", "scopes": "invoke"}
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["scopes"] == ["invoke"]
