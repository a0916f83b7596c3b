"""The bootstrap's side of layers, as a real subprocess over real HTTP: they are unpacked in
order into the container's opt directory only, and sit on sys.path after the code."""

from __future__ import annotations

import base64
import io
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.manager.bootstraps import (  # noqa: F401 (start_bootstrap: a fixture)
    Bootstrap,
    init,
    init_body,
    invoke,
    make_zip,
    start_bootstrap,
)

pytestmark = pytest.mark.integration

CODE = {
    "app.py": (
        "import sys, shared, fromlayer\n"
        "def handler(event, context):\n"
        "    return {'shared': shared.WHO, 'layer': fromlayer.WHO, 'path': sys.path[:4]}\n"
    ),
    "shared.py": "WHO = 'code'\n",
}


@pytest.fixture
def start(start_bootstrap) -> Callable[[bool], Bootstrap]:  # noqa: F811
    """Start bootstraps as the process backend does (with --opt-dir, or without it)."""
    return lambda with_opt_dir=True: start_bootstrap(opt_dir=with_opt_dir)


def hostile_zip(name: str) -> str:
    """A zip with one entry named ``name`` as is (zipfile's writer would keep it too)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(name), "owned")
    return base64.b64encode(buffer.getvalue()).decode()


def test_layers_unpack_in_order_after_the_code_on_sys_path(start):
    bootstrap = start()
    conn = bootstrap.connect()
    first = make_zip({"python/fromlayer.py": "WHO = 'first'\n", "python/shared.py": "WHO = 'x'"})
    second = make_zip({"python/fromlayer.py": "WHO = 'second'\n"})
    status, body = init(conn, init_body("app.handler", code_zip_b64=make_zip(CODE),
                                        layers_zip_b64=[first, second]))  # fmt: skip
    assert status == 200, body

    status, body = invoke(conn, {})

    opt = bootstrap.workdir / "opt"
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert status == 200, body
    # the later layer's file won; the function's own shared.py beat the layer's
    assert body["result"]["shared"] == "code" and body["result"]["layer"] == "second"
    assert body["result"]["path"][1:3] == [
        str(opt / "python" / "lib" / version / "site-packages"), str(opt / "python"),
    ]  # fmt: skip
    assert (opt / "python" / "shared.py").read_text() == "WHO = 'x'"


@pytest.mark.parametrize(
    "entry", ["../escaped.txt", "/tmp/absolute-escape.txt", "python/../../escaped.txt"]
)
def test_a_layer_cannot_make_the_bootstrap_write_outside_its_opt_dir(start, entry, tmp_path):
    bootstrap = start()
    conn = bootstrap.connect()
    good = make_zip({"python/fine.py": ""})

    status, body = init(conn, init_body("app.handler", code_zip_b64=make_zip(CODE),
                                        layers_zip_b64=[good, hostile_zip(entry)]))  # fmt: skip

    assert status == 400 and body["error"]["type"] == "InvalidLayerZip", body
    assert "layer 2" in body["error"]["message"]
    written = [p for p in tmp_path.rglob("*escape*")] + list(Path("/tmp").glob("absolute-escape*"))
    assert written == []
    status, _ = invoke(conn, {})  # still uninitialised
    assert status == 503


def test_layers_are_refused_by_a_bootstrap_without_an_opt_dir(start):
    bootstrap = start(False)
    conn = bootstrap.connect()

    status, body = init(conn, init_body(layers_zip_b64=[make_zip({"python/x.py": ""})]))

    assert status == 400 and "opt directory" in body["error"]["message"], body


def test_a_malformed_layer_list_is_a_bad_request(start):
    conn = start().connect()

    status, body = init(conn, init_body(layers_zip_b64="not a list"))

    assert status == 400 and "layers_zip_b64" in body["error"]["message"], body
