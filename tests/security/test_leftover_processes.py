"""Issue 12 item 2: a process one call leaves running must not run on into the next call of
that container. Call 1 starts background processes (a plain child, a double-forked one in a
session of its own, and one a thread starts after the call returned); call 2, on the same warm
container, reports from inside whether they still run and whether their files still grow."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import handler_zip
from tests.stack import Stack

pytestmark = pytest.mark.integration

PRELUDE = """
import os
import subprocess
import sys
import tempfile
import threading
import time

# a writer bounded to 60 s: appends a timestamp to its file every 0.2 s
LOOP = (
    "import sys, time\\n"
    "for _ in range(300):\\n"
    "    open(sys.argv[1], 'a').write(f'{time.time()}\\\\n')\\n"
    "    time.sleep(0.2)\\n"
)


def ledger(name):
    return os.path.join(tempfile.gettempdir(), name)


def popen(name):
    return subprocess.Popen([sys.executable, "-c", LOOP, ledger(name)]).pid


def double_fork(name):
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.setsid()
        grandchild = os.fork()
        if grandchild == 0:
            os.execv(sys.executable, [sys.executable, "-c", LOOP, ledger(name)])
        os.write(write, str(grandchild).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as f:
        return int(f.read())


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def sizes(names):
    return {n: os.path.getsize(ledger(n)) if os.path.exists(ledger(n)) else -1 for n in names}
"""

HANDLER = handler_zip(
    """
    if event["step"] == "start":
        def start_later():  # once the call has returned (it waits ~20 ms for its writers)
            time.sleep(0.5)
            popen("later")
        thread = threading.Thread(target=start_later, daemon=True)
        thread.start()
        pids = {"popen": popen("popen"), "setsid": double_fork("setsid")}
        for _ in range(250):  # until both run for sure: they have written once
            if min(sizes(pids).values()) > 0:
                break
            time.sleep(0.02)
        return pids
    pids = event["pids"]
    before = sizes([*pids, "later"])
    time.sleep(0.6)
    return {"alive": [name for name, pid in pids.items() if alive(pid)],
            "grown": [n for n, size in sizes(before).items() if size != before[n]],
            "written": [n for n, size in before.items() if size > 0]}
    """,
    prelude=PRELUDE,
)


@pytest.fixture(params=["process", "docker"])
def stack_backend(request) -> str:
    return request.param


async def test_what_a_call_leaves_running_is_gone_by_the_next_call(hotpool_stack) -> None:
    stack: Stack = await hotpool_stack()
    resp = await stack.deploy("leaver", HANDLER)
    assert resp.status in (200, 201), await resp.text()

    resp = await stack.invoke("leaver", {"step": "start"})
    assert resp.status == 200, await resp.text()
    pids = await resp.json()
    await stack.idle_entries("leaver", 1)
    await asyncio.sleep(2.0)  # the thread call 1 left behind starts its process meanwhile
    resp = await stack.invoke("leaver", {"step": "check", "pids": pids})
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert len(stack.live_containers()) == 1, "both calls ran in the same container"

    assert sorted(report["written"]) == ["later", "popen", "setsid"], report
    assert report["alive"] == []
    assert report["grown"] == []
