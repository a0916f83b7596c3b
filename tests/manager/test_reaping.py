"""The bootstrap's reaping (hotpool_runtime/reaping.py), run in a Python of its own: it must
find and kill every process started under it, a double-forked setsid() one included, whichever
way it reads /proc."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from hotpool.manager.runtimes import PYTHON_BOOTSTRAP as BOOTSTRAP_PATH

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    from hotpool_runtime import reaping

    subreaper = reaping.become_subreaper()
    plain = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30"])
    if os.fork() == 0:  # a grandchild in a session of its own, orphaned at once
        os.setsid()
        if os.fork() == 0:
            time.sleep(30)
        os._exit(0)
    time.sleep(0.3)  # the shell has forked; the orphan is re-parented
    me = os.getpid()
    tree = reaping.descendants(me)

    def by_stat(root):
        found, stack = set(), [root]
        while stack:
            for pid in reaping._children_from_stat(stack.pop()):
                found.add(pid)
                stack.append(pid)
        return found

    live = by_stat(me)
    killed = reaping.kill_leftovers()
    print(json.dumps({"subreaper": subreaper, "tree": sorted(tree), "live": sorted(live),
                      "killed": killed, "after": sorted(reaping.descendants(me)),
                      "children": reaping._has_children()}))
    """
)


def test_every_descendant_is_found_and_killed() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(BOOTSTRAP_PATH)!r})\n{SCRIPT}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    report = json.loads(out)
    assert report["subreaper"]
    # the shell and its sleeps (a shell may exec the last one) and the orphaned grandchild; the
    # zombie middle child is listed only by the kernel's children files
    assert len(report["live"]) >= 3, report
    assert set(report["live"]) <= set(report["tree"])
    assert report["killed"] >= len(report["live"])
    assert report["after"] == []
    assert not report["children"], "every killed child was reaped"
