"""`hotpool deploy` of a Node.js folder with a package.json (main_server/npm_build.py): npm
installs the production dependencies, from the npm registry, into a temporary copy that is
zipped; the user's folder is never touched; npm missing or failing is a clear error. The
dependency is a real, tiny package (is-number, no dependencies of its own); the dev
dependency (is-odd) must stay out of the package."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from hotpool.main_server import npm_build
from hotpool.main_server.cli import guess_runtime
from hotpool.main_server.npm_build import build_node_package
from hotpool.main_server.vendoring import VendoringError
from tests.main_server.test_cli import _cli, dev  # noqa: F401 (dev: a fixture)
from tests.services import missing_service

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("npm") is None, reason="no npm (apt install npm)"),
]

MANIFEST = {
    "name": "counter",
    "version": "1.0.0",
    "dependencies": {"is-number": "7.0.0"},
    "devDependencies": {"is-odd": "3.0.1"},
}
INDEX = "const isNumber = require('is-number');\nexports.handler = async (e) => isNumber(e.n);\n"


def project(folder: Path, *, lock: bool) -> Path:
    folder.mkdir()
    (folder / "package.json").write_text(json.dumps(MANIFEST))
    (folder / "index.js").write_text(INDEX)
    if lock:  # what `npm install` leaves beside package.json, committed with it
        done = subprocess.run(
            ["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"],
            cwd=folder, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            missing_service(f"npm cannot reach its registry: {done.stderr[-400:]}")
    return folder


def names(data: bytes) -> set[str]:
    return set(zipfile.ZipFile(io.BytesIO(data)).namelist())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("lock", [True, False], ids=["npm-ci", "npm-install"])
def test_production_dependencies_are_installed_into_a_copy(tmp_path, lock):
    folder = project(tmp_path / "fn", lock=lock)
    before = snapshot(folder)
    try:
        data = build_node_package(folder)
    except VendoringError as exc:
        if "ENOTFOUND" in str(exc) or "EAI_AGAIN" in str(exc):
            missing_service(f"npm cannot reach its registry: {exc}")
        raise
    found = names(data)
    assert {"index.js", "package.json", "node_modules/is-number/index.js"} <= found
    assert not any(name.startswith("node_modules/is-odd/") for name in found)  # dev only
    assert ("package-lock.json" in found) is lock or "package-lock.json" in found
    assert snapshot(folder) == before  # the user's folder is as it was
    assert not (folder / "node_modules").exists()


def test_a_lock_out_of_step_with_package_json_fails_with_npms_reason(tmp_path):
    folder = project(tmp_path / "fn", lock=True)
    (folder / "package.json").write_text(
        json.dumps({**MANIFEST, "dependencies": {"is-number": "6.0.0"}})
    )
    with pytest.raises(
        VendoringError, match=r"npm ci failed \(exit status \d+\):\nnpm (ERR!|error)"
    ):
        build_node_package(folder)


def test_without_npm_the_deploy_says_what_to_install(tmp_path, monkeypatch):
    folder = project(tmp_path / "fn", lock=False)
    monkeypatch.setattr(npm_build.shutil, "which", lambda name: None)
    with pytest.raises(VendoringError, match=r"npm is not installed.*apt-get install npm"):
        build_node_package(folder)
    # --no-build: the folder as it is, npm or not
    assert names(build_node_package(folder, build=False)) == {"index.js", "package.json"}


def test_the_runtime_is_guessed_from_the_folder(tmp_path):
    node = project(tmp_path / "node", lock=False)
    assert guess_runtime(node) == "nodejs"
    (node / "tool.py").write_text("")
    assert guess_runtime(node) == "python"  # Python files: say --runtime nodejs to choose
    assert guess_runtime(tmp_path / "missing.zip") == "python"


def test_hotpool_deploy_of_a_node_folder_runs_with_its_dependency(dev, tmp_path):  # noqa: F811
    cwd, env = dev
    folder = project(tmp_path / "counter", lock=True)
    deployed = _cli("deploy", str(folder), env=env, cwd=cwd)
    assert deployed.returncode == 0, deployed.stderr
    settings = json.loads(deployed.stdout)
    assert (settings["runtime"], settings["handler"]) == ("nodejs", "index.handler")
    answer = _cli("invoke", "counter", "--data", '{"n": "42"}', env=env, cwd=cwd)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) is True
    assert not (folder / "node_modules").exists()
