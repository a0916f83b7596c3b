"""The Node.js runtime collects its garbage once idle (manager/runtime/nodejs/lib/idle.js): the
heap a burst of calls left behind is given back without another call, and the function never
sees the collector."""

from __future__ import annotations

import textwrap
import time

import pytest

from tests.manager.test_bootstrap import init, invoke, make_zip

pytestmark = pytest.mark.integration

SOURCE = textwrap.dedent(
    """
    const v8 = require('v8');
    exports.handler = async (event) => {
      if (event.churn) {  // garbage the call leaves: ~30 MB of short strings, dropped
        let kept = [];
        for (let i = 0; i < 400000; i++) kept.push('x'.repeat(40) + i);
        kept = null;
      }
      return { used: v8.getHeapStatistics().used_heap_size, gc: typeof globalThis.gc };
    };
    """
)
MIB = 1024 * 1024


def test_an_idle_container_collects_what_its_calls_left_and_hides_the_collector(start_node):
    bootstrap = start_node()
    conn = bootstrap.connect()
    body = {
        "function_name": "fn", "function_version": 1, "handler": "index.handler",
        "memory_mb": 256, "timeout_s": 30, "env": {},
        "code_zip_b64": make_zip({"index.js": SOURCE}),
    }  # fmt: skip
    assert init(conn, body)[0] == 200
    status, churned = invoke(conn, {"churn": True})
    assert status == 200, churned
    # right away, the garbage is still there: the next call sees it
    left = invoke(conn, {})[1]["result"]
    assert left["used"] > churned["result"]["used"] - 5 * MIB > 10 * MIB, (churned, left)
    time.sleep(2.5)  # past the idle delay (1 s), with room for a loaded machine
    idle = invoke(conn, {})[1]["result"]
    assert idle["used"] < left["used"] - 10 * MIB, (left, idle)
    assert idle["gc"] == left["gc"] == "undefined"  # the function's global has no gc
