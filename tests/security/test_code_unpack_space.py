"""A package that deploys but does not fit in the container's tmpfs (the code, layers and /tmp
share it on Docker) fails its cold start with a function error that names the setting, not a
bare platform 502, and the container it filled is not reused."""

from __future__ import annotations

import os

import pytest

from tests.helpers import make_zip

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_backend() -> str:
    return "docker"


async def test_code_larger_than_the_tmpfs_is_a_clear_init_error(hotpool_stack):
    stack = await hotpool_stack(container_tmpfs_mb=4)
    # random bytes do not compress: 8 MB unzipped, over the 4 MB tmpfs
    code = make_zip({"main.py": "def handler(event, context):\n    return 1\n",
                     "blob.bin": os.urandom(8 * 2**20)})  # fmt: skip
    assert (await stack.deploy("big", code, memory_mb=256)).status == 201

    resp = await stack.invoke("big")
    body = await resp.json()
    assert resp.status == 500, body
    assert resp.headers["X-Hotpool-Function-Error"] == "CodeUnpackFailed"
    assert "HOTPOOL_CONTAINER_TMPFS_MB" in body["errorMessage"]
    assert "8 MB unzipped" in body["errorMessage"]
