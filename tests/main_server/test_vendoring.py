"""Vendoring requirements.txt for the runtime (main_server/vendoring.py), with real packages
from PyPI: pure and binary wheels, the cache, and a package that only has an sdist."""

from __future__ import annotations

import io
import itertools
import subprocess
import zipfile
from pathlib import Path

import pytest

from hotpool.main_server.vendoring import (
    RUNTIME_PYTHON_VERSION,
    VendoringError,
    build_package,
    cache_key,
    explain_pip_failure,
    pip_command,
    vendor,
)

PIP_NO_WHEEL = """\
ERROR: Could not find a version that satisfies the requirement docopt==0.6.2 (from versions: none)
ERROR: No matching distribution found for docopt==0.6.2
"""


def names(data: bytes) -> set[str]:
    return set(zipfile.ZipFile(io.BytesIO(data)).namelist())


def project(tmp_path: Path, requirements: str, files: dict[str, str] | None = None) -> Path:
    root = tmp_path / "fn"
    root.mkdir()
    (root / "requirements.txt").write_text(requirements)
    for name, text in (files or {"main.py": "def handler(e, c):\n    return 1\n"}).items():
        (root / name).write_text(text)
    return root


@pytest.mark.unit
def test_pip_targets_the_runtime_not_the_client():
    command = pip_command(Path("r.txt"), Path("out"))

    flags = dict(itertools.pairwise(command))
    platforms = [value for flag, value in itertools.pairwise(command) if flag == "--platform"]
    # bookworm's glibc is 2.36: every manylinux tag from 2.17 (manylinux2014) up to it
    assert platforms[0] == "manylinux_2_36_x86_64" and platforms[-1] == "manylinux2014_x86_64"
    assert "manylinux_2_28_x86_64" in platforms and "manylinux_2_37_x86_64" not in platforms
    assert flags["--implementation"] == "cp"
    assert flags["--python-version"] == RUNTIME_PYTHON_VERSION == "3.11"
    assert "--only-binary=:all:" in command and flags["--target"] == "out"


@pytest.mark.unit
def test_a_missing_wheel_is_named():
    message = explain_pip_failure(PIP_NO_WHEEL)

    assert "docopt==0.6.2 has no wheel for the runtime" in message
    assert "--no-build" in message
    assert "pip could not install" in explain_pip_failure("ERROR: something else\n")


@pytest.mark.unit
def test_an_unreachable_index_and_a_missing_version_are_told_apart():
    offline = (
        "WARNING: Retrying (Retry(total=4, connect=None)) after connection broken by "
        "'NewConnectionError(\"Failed to establish a new connection: [Errno 111] Connection "
        "refused\")': /simple/six/\n" + PIP_NO_WHEEL.replace("docopt==0.6.2", "six==1.16.0")
    )
    assert "could not reach the package index" in explain_pip_failure(offline)
    no_version = (
        "ERROR: Could not find a version that satisfies the requirement flask==0.0.0.99 "
        "(from versions: 2.3.3, 3.0.0, 3.1.0)\n"
        "ERROR: No matching distribution found for flask==0.0.0.99\n"
    )
    message = explain_pip_failure(no_version)
    assert "no version of flask==0.0.0.99 has a wheel" in message
    assert "3.1.0" in message


@pytest.mark.unit
def test_the_cache_is_keyed_by_the_files_content():
    assert cache_key(b"six\n") == cache_key(b"six\n")
    assert cache_key(b"six\n") != cache_key(b"six==1.16.0\n")


@pytest.mark.integration
def test_pure_and_binary_wheels_are_vendored_once(tmp_path, monkeypatch):
    requirements = project(tmp_path, "six==1.16.0\nrequests==2.32.3\n") / "requirements.txt"
    cache = tmp_path / "cache"

    site = vendor(requirements, cache)

    assert (site / "six.py").is_file() and (site / "requests" / "__init__.py").is_file()
    # requests' dependencies came too, charset_normalizer as its CPython 3.11 manylinux build
    compiled = list((site / "charset_normalizer").glob("*.cpython-311-x86_64-linux-gnu.so"))
    assert compiled, sorted(p.name for p in (site / "charset_normalizer").iterdir())

    def no_pip(*args, **kwargs):
        raise AssertionError("pip ran again for an unchanged requirements.txt")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert vendor(requirements, cache) == site


@pytest.mark.integration
def test_the_package_holds_the_code_and_the_dependencies_and_the_code_wins(tmp_path):
    root = project(tmp_path, "six==1.16.0\n", {"main.py": "import six\n", "six.py": "MINE = 1\n"})

    data = build_package(root, cache_dir=tmp_path / "cache")

    assert {"main.py", "six.py", "requirements.txt"} <= names(data)
    assert any(n.startswith("six-1.16.0.dist-info/") for n in names(data))
    assert zipfile.ZipFile(io.BytesIO(data)).read("six.py") == b"MINE = 1\n"
    # a layer puts them under python/
    layer = build_package(root, cache_dir=tmp_path / "cache", prefix="python")
    assert "python/six-1.16.0.dist-info/METADATA" in names(layer) and "six.py" in names(layer)
    # and --no-build leaves them out
    assert not any("dist-info" in n for n in names(build_package(root, build=False)))


@pytest.mark.integration
def test_a_package_with_only_an_sdist_fails_naming_it(tmp_path):
    root = project(tmp_path, "six==1.16.0\ndocopt==0.6.2\n")

    with pytest.raises(VendoringError, match=r"docopt==0\.6\.2 has no wheel for the runtime"):
        build_package(root, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "requirements").iterdir())  # nothing half-built


@pytest.mark.integration
def test_an_empty_requirements_file_vendors_nothing(tmp_path):
    root = project(tmp_path, "# nothing yet\n")

    assert names(build_package(root, cache_dir=tmp_path / "cache")) == {
        "main.py", "requirements.txt"
    }  # fmt: skip
