"""Output that bypasses the bootstrap's capture cannot fill the host's disk.

The bootstrap captures ``print`` and ``sys.stdout`` per call (bounded), but a function writing
straight to file descriptor 1 reaches the container's own stdout: Docker's log driver on the
Docker backend, the Manager's side of the process backend. A tenant writes 50 MB that way; the
call still answers, and what landed on the host's disk stays within a few MB.
"""

from __future__ import annotations

from pathlib import Path

import aiodocker
import pytest

from hotpool.manager import process_backend, runtimes
from hotpool.manager.backend import ContainerSpec
from hotpool.shared.errors import ContainerFailed
from tests.helpers import handler_zip

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
WRITTEN_MB = 50
BOUND_BYTES = 4 * MiB  # a twelfth of what the function writes

FLOOD = handler_zip(
    f"""
    import os
    chunk = b"x" * (1024 * 1024 - 1) + b"\\n"
    for _ in range({WRITTEN_MB}):
        os.write(1, chunk)
        os.write(2, chunk[:1024])
    return "done"
    """
)


@pytest.fixture(params=["process", "docker"])
def stack_backend(request) -> str:
    return request.param


def _bytes_under(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


async def _docker_log_bytes(container_id: str) -> int:
    """What Docker keeps on the host for the container's output (0 with no log driver)."""
    async with aiodocker.Docker() as docker:
        info = await docker.containers.container(container_id).show()
    if info["HostConfig"]["LogConfig"]["Type"] == "none":
        return 0
    log_path = Path(info["LogPath"])
    # the live file and its rotated predecessors (<id>-json.log.1, ...)
    return sum(p.stat().st_size for p in log_path.parent.glob(log_path.name + "*"))


async def test_output_written_past_the_capture_stays_bounded_on_disk(hotpool_stack, stack_backend):
    stack = await hotpool_stack()
    assert (await stack.deploy("flood", FLOOD)).status == 201

    resp = await stack.invoke("flood", {})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == "done"

    (container_id,) = stack.live_containers()
    if stack_backend == "docker":
        on_disk = await _docker_log_bytes(container_id)
    else:
        on_disk = _bytes_under(stack.settings.containers_dir)
    assert on_disk <= BOUND_BYTES, f"{on_disk / MiB:.1f} MB of output kept on the host"

    again = await stack.invoke("flood", {})  # the container still serves
    assert again.status == 200 and await again.json() == "done"


async def test_process_container_dying_at_start_reports_only_the_tail_of_its_output(
    tmp_path, monkeypatch
):
    crash = tmp_path / "crash.py"
    crash.write_text("import sys\nsys.stdout.write('x' * 100_000)\nsys.exit('boom at start')\n")
    monkeypatch.setattr(runtimes, "PYTHON_BOOTSTRAP", crash)
    backend = process_backend.ProcessBackend(tmp_path / "c")
    try:
        with pytest.raises(ContainerFailed) as caught:
            await backend.start(ContainerSpec("python", 128))
    finally:
        await backend.close()
    message = caught.value.message
    assert "code 1" in message and message.endswith("boom at start\n")
    assert len(message) <= process_backend.output_tail_bytes + 100
