"""Each runtime's handler: its default when a function names none, its form, and the
package check that its file is in the zip; and the process backend's per-runtime parts."""

from __future__ import annotations

import pytest

from hotpool.manager import process_backend, runtimes
from hotpool.shared.errors import InvalidPackage, InvalidRequest, RuntimeImageMissing
from hotpool.shared.models import FunctionConfig
from hotpool.shared.packages import PackageLimits, inspect_package
from tests.helpers import make_zip

pytestmark = pytest.mark.unit


def test_the_default_handler_is_the_runtimes():
    assert FunctionConfig().handler == "main.handler"
    assert FunctionConfig(runtime="nodejs").handler == "index.handler"
    assert FunctionConfig.from_params({"runtime": "nodejs"}).handler == "index.handler"
    stored = FunctionConfig(runtime="nodejs").to_dict()
    assert FunctionConfig.from_dict(stored).handler == "index.handler"


@pytest.mark.parametrize(
    "handler", ["index.handler", "src/my-app.handler", "app.nested.fn", "a/b-c/d_e.$x"]
)
def test_node_handlers_of_lambdas_form_are_accepted(handler):
    assert FunctionConfig(runtime="nodejs", handler=handler).handler == handler


@pytest.mark.parametrize(
    ("runtime", "handler"),
    [
        ("nodejs", "index"),
        ("nodejs", "../x.handler"),
        ("nodejs", "a b.handler"),
        ("python", "my-app.handler"),
        ("python", "index"),
    ],
)
def test_handlers_not_of_the_runtimes_form_are_refused_naming_it(runtime, handler):
    with pytest.raises(InvalidRequest, match=r"must be '(file\.export|module\.function)'"):
        FunctionConfig(runtime=runtime, handler=handler)


@pytest.mark.parametrize(
    ("files", "handler"),
    [
        ({"index.js": ""}, "index.handler"),
        ({"index.mjs": ""}, "index.handler"),
        ({"src/my-app.cjs": ""}, "src/my-app.handler"),
        ({"node_modules/pkg/index.js": "", "x.js": ""}, "pkg.handler"),
    ],
)
def test_a_node_package_holding_its_handler_file_passes(files, handler):
    inspect_package(make_zip(files), handler, PackageLimits(), "nodejs")


def test_a_node_package_without_its_handler_file_says_what_is_there():
    with pytest.raises(InvalidPackage, match=r"no app.js, app.mjs or app.cjs \(entries: index.js"):
        inspect_package(make_zip({"index.js": ""}), "app.handler", PackageLimits(), "nodejs")
    with pytest.raises(InvalidPackage, match="wraps everything in the folder 'fn/'"):
        inspect_package(make_zip({"fn/index.js": ""}), "index.handler", PackageLimits(), "nodejs")


def test_the_process_backend_runs_node_with_this_machines_node(monkeypatch):
    monkeypatch.setattr(runtimes.shutil, "which", lambda name: f"/opt/bin/{name}")
    command = runtimes.process_command("nodejs", runtimes.RUNTIME_DIR)
    assert command == ["/opt/bin/node", *runtimes.NODE_FLAGS, str(runtimes.NODEJS_BOOTSTRAP)]
    monkeypatch.setattr(runtimes.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeImageMissing, match="apt-get install nodejs"):
        runtimes.process_command("nodejs", runtimes.RUNTIME_DIR)


def test_node_gets_a_larger_address_space_allowance_than_python():
    python = process_backend._address_space_bytes(128, "python")
    node = process_backend._address_space_bytes(128, "nodejs")
    assert python == (128 + process_backend.address_space_allowance_mb) * 2**20
    assert node == (128 + process_backend.runtime_allowance_mb["nodejs"]) * 2**20 > python
