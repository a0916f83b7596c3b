"""Issue 12 item 8: a process that double-forks and calls setsid() leaves the container's
process group and session; removing the container (after a timeout, or a DELETE) must still
kill it. Process backend: in Docker the kernel kills a container's whole PID namespace."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.helpers import handler_zip
from tests.stack import Stack, wait_for

pytestmark = pytest.mark.integration

# Runs inside the function: a grandchild in a session of its own (bounded to 60 s) appends a
# timestamp to event["ledger"] every 0.2 s and writes its pid to event["pidfile"].
ESCAPE_PRELUDE = """
import os
import threading
import time


def escape(ledger, pidfile):
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pidfile + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            for _ in range(300):
                with open(ledger, "a") as f:
                    f.write(f"{time.time()}\\n")
                time.sleep(0.2)
        os._exit(0)
    os.waitpid(child, 0)
"""

ESCAPE_NOW_THEN_SLEEP = handler_zip(
    """
    escape(event["ledger"], event["pidfile"])
    time.sleep(event["sleep_s"])
    return "returned"
    """,
    prelude=ESCAPE_PRELUDE,
)

# The escape happens after the call returned, from a thread the call left behind.
ESCAPE_AFTER_RETURN = handler_zip(
    """
    def later():
        time.sleep(0.3)
        escape(event["ledger"], event["pidfile"])

    threading.Thread(target=later, daemon=True).start()
    return "returned"
    """,
    prelude=ESCAPE_PRELUDE,
)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie is dead: it has exited and only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def size(path: Path) -> int:
    """The file's size, -1 while it does not exist."""
    return path.stat().st_size if path.exists() else -1


async def escaped_pid(pidfile: Path, ledger: Path) -> int:
    """The grandchild's pid, once it has started writing."""

    async def started() -> bool:
        return size(pidfile) > 0 and size(ledger) > 0

    assert await wait_for(started), "the grandchild never started"
    return read_pid(pidfile)


def read_pid(path: Path) -> int:
    return int(path.read_text())


async def assert_killed(pid: int, ledger: Path) -> None:
    async def dead() -> bool:
        return not alive(pid)

    try:
        assert await wait_for(dead, timeout_s=3.0), f"the escaped grandchild {pid} still runs"
        before = size(ledger)
        await asyncio.sleep(1.0)
        assert size(ledger) == before, "the ledger still grows"
    finally:
        if alive(pid):
            os.kill(pid, 9)


async def test_a_setsid_grandchild_dies_with_its_timed_out_container(
    hotpool_stack, tmp_path
) -> None:
    stack: Stack = await hotpool_stack()
    ledger, pidfile = tmp_path / "ledger", tmp_path / "pid"
    resp = await stack.deploy("escaper", ESCAPE_NOW_THEN_SLEEP, timeout_s=1)
    assert resp.status in (200, 201), await resp.text()

    event = {"ledger": str(ledger), "pidfile": str(pidfile), "sleep_s": 30}
    resp = await stack.invoke("escaper", event)
    assert resp.status == 504, await resp.text()

    pid = await escaped_pid(pidfile, ledger)
    await assert_killed(pid, ledger)


async def test_a_setsid_grandchild_dies_when_its_function_is_deleted(
    hotpool_stack, tmp_path
) -> None:
    stack: Stack = await hotpool_stack()
    ledger, pidfile = tmp_path / "ledger", tmp_path / "pid"
    resp = await stack.deploy("escaper", ESCAPE_AFTER_RETURN)
    assert resp.status in (200, 201), await resp.text()
    resp = await stack.invoke("escaper", {"ledger": str(ledger), "pidfile": str(pidfile)})
    assert resp.status == 200, await resp.text()
    pid = await escaped_pid(pidfile, ledger)
    assert alive(pid)

    resp = await stack.client.delete("/v1/functions/escaper")
    assert resp.status in (200, 204), await resp.text()
    await assert_killed(pid, ledger)
