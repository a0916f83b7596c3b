"""The Node.js bootstrap unpacks code and layers with its own zip reader (lib/zip.js): no entry
may make it write outside the code or opt directory, a corrupt zip is a 400 that leaves it
uninitialised, and code larger than the container's tmpfs is a clear init error (Docker)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import zipfile
from pathlib import Path

import pytest

from tests.helpers import make_zip as make_zip_bytes
from tests.manager.bootstraps import init, init_body, invoke, make_zip
from tests.services import RUNTIME_IMAGE_NODEJS
from tests.stack import require_docker

pytestmark = pytest.mark.integration

CODE = {"index.js": "exports.handler = async () => require('fine');\n"}


def hostile_zip(name: str) -> str:
    """A zip with one entry named ``name`` as is."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(name), "owned")
    return base64.b64encode(buffer.getvalue()).decode()


ENTRIES = [
    "../escaped.txt", "/tmp/absolute-escape.txt", "nodejs/../../escaped.txt",
    "C:escaped.txt", "..\\escaped.txt",
]  # fmt: skip


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("where", ["code", "layer"])
def test_no_entry_makes_the_node_bootstrap_write_outside_its_folders(
    start_node, tmp_path, entry, where
):
    bootstrap = start_node(opt_dir=True)
    conn = bootstrap.connect()
    if where == "code":
        body = init_body("index.handler", code_zip_b64=hostile_zip(entry))
    else:
        good = make_zip({"nodejs/node_modules/fine/index.js": "module.exports = 1;"})
        body = init_body("index.handler", code_zip_b64=make_zip(CODE),
                         layers_zip_b64=[good, hostile_zip(entry)])  # fmt: skip
    status, answer = init(conn, body)
    assert status == 400, answer
    expected = "InvalidCodeZip" if where == "code" else "InvalidLayerZip"
    assert answer["error"]["type"] == expected
    written = list(tmp_path.rglob("*escape*")) + list(Path("/tmp").glob("absolute-escape*"))
    assert written == []
    assert invoke(conn, {})[0] == 503  # still uninitialised


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "bad method"])
def test_a_corrupt_zip_is_a_bad_request_and_a_good_one_loads_after(start_node, damage):
    conn = start_node().connect()
    raw = base64.b64decode(make_zip(CODE))
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "not a zip":
        raw = b"PK\x03\x04" + os.urandom(200)
    else:  # an entry compressed with a method the reader does not know (99: AES)
        raw = raw.replace(b"PK\x01\x02", b"PK\x01\x02", 1)
        at = raw.index(b"PK\x01\x02")
        raw = raw[: at + 10] + b"\x63\x00" + raw[at + 12 :]
    status, answer = init(conn, init_body("index.handler",
                                          code_zip_b64=base64.b64encode(raw).decode()))  # fmt: skip
    assert (status, answer["error"]["type"]) == (400, "InvalidCodeZip"), answer
    good = make_zip({"index.js": "exports.handler = async () => 'ok';\n"})
    assert init(conn, init_body("index.handler", code_zip_b64=good))[0] == 200
    assert invoke(conn, {})[1]["result"] == "ok"


async def test_node_code_larger_than_the_tmpfs_is_a_clear_init_error(hotpool_stack):
    await require_docker(RUNTIME_IMAGE_NODEJS)
    stack = await hotpool_stack(backend="docker", container_tmpfs_mb=4)
    files = {"index.js": "exports.handler = async () => 1;\n", "blob.bin": os.urandom(8 * 2**20)}
    code = await asyncio.to_thread(make_zip_bytes, files)  # deflating 8 MiB: off the loop
    resp = await stack.deploy("big", code, runtime="nodejs", memory_mb=256)
    assert resp.status == 201, await resp.text()
    resp = await stack.invoke("big")
    body = await resp.json()
    assert resp.status == 500, body
    assert resp.headers["X-Hotpool-Function-Error"] == "CodeUnpackFailed"
    assert "HOTPOOL_CONTAINER_TMPFS_MB" in body["errorMessage"]
    assert "8 MB unzipped" in body["errorMessage"]
