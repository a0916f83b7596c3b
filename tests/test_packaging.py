"""What `pip install hotpool` puts on a machine: one import name, the runtime bootstrap and the
Alembic template inside it, and no in-process Redis on a production service's import path."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def test_services_do_not_import_the_in_process_redis():
    # fakeredis and lupa cost ~16 MiB and ~175 ms of start-up: only `hotpool dev` without a
    # redis-server may pay for them, never `hotpool main` or `hotpool manager`
    probe = (
        "import sys, hotpool.main_server.serve, hotpool.main_server.app, hotpool.manager.app;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fakeredis', 'lupa')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_wheel_holds_only_the_hotpool_package(tmp_path):
    # a copy without build/: setuptools would package whatever an earlier build left there
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "build", "*.egg-info", "__pycache__", ".hotpool", ".*_cache", "bench-results"
        ),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("hotpool-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"hotpool"}
    assert {n.split("/")[1] for n in names if n.startswith("hotpool/")} == {
        "main_server", "manager", "shared", "migrations", "benchmarks",
    }  # fmt: skip
    for needed in (
        "hotpool/manager/runtime/python/__main__.py",
        "hotpool/manager/runtime/python/hotpool_runtime/http11.py",
        "hotpool/manager/runtime/nodejs/bootstrap.js",
        "hotpool/manager/runtime/nodejs/package.json",
        "hotpool/manager/runtime/nodejs/lib/runtime.js",
        "hotpool/migrations/script.py.mako",
        "hotpool/migrations/versions/0001_functions.py",
        "hotpool/benchmarks/chaos_function/main.py",
    ):
        assert needed in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert (
        "hotpool = hotpool.main_server.cli:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
