"""The Node.js runtime joins the container secret's guarantees (test_container_secret.py):
its bootstrap refuses every path without the secret, and a Node function cannot find its
own container's secret (environment, /proc, stdin); on the process backend."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import aiohttp
import pytest

from hotpool.shared.models import CONTAINER_SECRET_HEADER, PoolEntry
from tests.helpers import make_zip

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH (apt install nodejs)"),
]

COUNTER = make_zip(
    {
        "index.js": """
            let runs = 0;
            exports.handler = async () => ({ runs: ++runs });
        """
    }
)
# everywhere user code could look for the secret
SEEKER = make_zip(
    {
        "index.js": """
            const fs = require('fs');
            exports.handler = async () => {
              const places = { 'process.env': JSON.stringify(process.env) };
              const pids = ['self', String(process.pid), String(process.ppid), '1',
                            ...fs.readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p))];
              for (const pid of pids) {
                for (const name of ['environ', 'cmdline']) {
                  const file = `/proc/${pid}/${name}`;
                  try { places[file] = fs.readFileSync(file, 'latin1'); }
                  catch (err) { /* not ours to read */ }
                }
              }
              try { places.stdin = fs.readFileSync(0, 'latin1'); }
              catch (err) { places.stdin = String(err); }
              return { ppid: process.ppid, places };
            };
        """
    }
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def test_a_node_container_refuses_every_path_without_its_secret(hotpool_stack, http):
    stack = await hotpool_stack()
    assert (await stack.deploy("victim", COUNTER, runtime="nodejs")).status == 201
    assert (await (await stack.invoke("victim", {})).json()) == {"runs": 1}
    entry = PoolEntry.decode((await stack.idle_entries("victim", 1))[0])
    base = f"http://{entry.address}"
    for headers in ({}, {CONTAINER_SECRET_HEADER: "wrong"}, {CONTAINER_SECRET_HEADER: ""}):
        for method, path in (("POST", "/invoke"), ("POST", "/init"), ("GET", "/healthz"),
                             ("GET", "/nowhere")):  # fmt: skip
            async with http.request(method, base + path, data=b"{}", headers=headers) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["type"] == "Unauthorized"
    # nothing ran: the next call is the second
    assert (await (await stack.invoke("victim", {})).json()) == {"runs": 2}


async def test_a_node_function_cannot_find_its_containers_secret(hotpool_stack):
    stack = await hotpool_stack()
    assert (await stack.deploy("seeker", SEEKER, runtime="nodejs")).status == 201
    reply = await stack.invoke("seeker", {})
    assert reply.status == 200, await reply.text()
    found = await reply.json()
    secret = PoolEntry.decode((await stack.idle_entries("seeker", 1))[0]).secret
    assert len(secret) >= 32
    looked = {"process.env", "/proc/self/environ", f"/proc/{found['ppid']}/environ", "stdin"}
    assert looked <= set(found["places"])
    assert [place for place, text in found["places"].items() if secret in text] == []
