"""Code packages do not pile up for ever: only the newest HOTPOOL_KEEP_VERSIONS versions of a
function keep their package, a deleted function keeps none, and a package another function
(or version) still uses is kept (packages are stored once per content).
"""

from __future__ import annotations

import pytest

from tests.helpers import handler_zip

pytestmark = pytest.mark.integration

KEEP = 2


def _packages(stack) -> set[str]:
    return {p.name for p in stack.settings.code_dir.glob("*.zip")}


async def test_old_versions_and_deleted_functions_leave_no_package(hotpool_stack):
    stack = await hotpool_stack(keep_versions=KEEP)
    shared = handler_zip("return 'shared'")
    assert (await stack.deploy("other", shared)).status in (200, 201)
    for i in range(6):
        assert (await stack.deploy("churn", handler_zip(f"return {i}"))).status in (200, 201)
    assert len(_packages(stack)) == KEEP + 1  # churn's newest two, and other's
    assert await (await stack.invoke("churn")).json() == 5

    assert (await stack.deploy("churn", shared)).status in (200, 201)  # the code "other" uses too
    resp = await stack.client.delete("/v1/functions/churn")
    assert resp.status == 200, await resp.text()

    assert len(_packages(stack)) == 1
    assert await (await stack.invoke("other")).json() == "shared"
