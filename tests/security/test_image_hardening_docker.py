"""An image function's own container is locked down as a runtime container is: limits,
read-only root, no capabilities, no-new-privileges, a non-root user, no published port, and
no way into the relay beside it (which demands the container secret it never sees). The
handler of the test image (tests/lambda_image/app.py) probes it from inside."""

from __future__ import annotations

import json

import pytest

from tests.main_server.test_image_functions_docker import (  # noqa: F401  (fixtures)
    LAMBDA_IMAGE,
    docker,
    image_stack,
)

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


@pytest.fixture
def stack_backend() -> str:
    return "docker"


async def test_the_image_function_container_is_hardened(image_stack, docker):  # noqa: F811
    stack = image_stack
    resp = await stack.client.put(
        "/v1/functions/probe", params={"image": LAMBDA_IMAGE, "memory_mb": "96"}
    )
    assert resp.status == 201, await resp.text()
    resp = await stack.invoke("probe", {"probe": True})
    assert resp.status == 200, await resp.text()
    seen = await resp.json()
    assert seen["root_writable"] is False
    assert int(seen["cap_eff"], 16) == 0
    assert seen["no_new_privs"] == "1"
    assert seen["relay_invoke_status"] == 401  # no secret, no call
    assert seen["secret_in_env"] is False

    filters = json.dumps({"label": [f"hotpool.image-manager={stack.settings.manager_id}"]})
    [function] = await docker.containers.list(filters=filters)
    info = await function.show()
    host = info["HostConfig"]
    relay_id = info["Config"]["Labels"]["hotpool.relay"]
    assert host["NetworkMode"] == f"container:{relay_id}"
    assert not host.get("PortBindings")
    assert host["Memory"] == host["MemorySwap"] == 96 * MiB
    assert host["PidsLimit"] == stack.settings.container_pids_limit
    assert host["ReadonlyRootfs"] is True and "ALL" in host["CapDrop"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Privileged"] is False and host["IpcMode"] == "none"
    assert info["Config"]["User"] == "10001:10001"
    relay = await docker.containers.container(relay_id).show()
    assert relay["HostConfig"]["Memory"] == stack.settings.image_relay_memory_mb * MiB
