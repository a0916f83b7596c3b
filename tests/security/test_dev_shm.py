"""A Docker function container offers no writable /dev/shm: /tmp is its only scratch space.

/dev/shm is a second, writable tmpfs Docker gives every container by default (64 MB outside the
container's /tmp limit, and shared memory between its processes); the README promises /tmp only.
"""

from __future__ import annotations

import pytest

from tests.helpers import handler_zip

pytestmark = pytest.mark.integration

SHM_WRITER = handler_zip(
    """
    import errno
    from multiprocessing import shared_memory
    found = {}
    try:
        with open("/dev/shm/hotpool-probe", "wb") as f:
            f.write(b"x" * 4096)
        found["file"] = "written"
    except OSError as exc:
        found["file"] = errno.errorcode[exc.errno]
    try:
        shared_memory.SharedMemory(name="hotpool-probe-seg", create=True, size=4096).unlink()
        found["segment"] = "created"
    except OSError as exc:
        found["segment"] = errno.errorcode[exc.errno]
    with open("/tmp/probe", "wb") as f:
        found["tmp"] = f.write(b"x" * 4096)
    return found
    """
)


@pytest.fixture
def stack_backend() -> str:
    return "docker"


async def test_function_cannot_write_dev_shm(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("shm", SHM_WRITER)).status == 201

    resp = await stack.invoke("shm", {})
    assert resp.status == 200, await resp.text()
    found = await resp.json()
    assert found["file"] != "written", found
    assert found["segment"] != "created", found
    assert found["tmp"] == 4096  # the scratch space the README promises still works
