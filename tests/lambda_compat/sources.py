"""Third-party code for the Lambda compatibility suite, fetched at test time and cached.

Nothing here is committed: each source is downloaded from PyPI or the npm registry with
their own clients (``pip``, ``npm pack``), unpacked or built once into
``~/.cache/hotpool-tests`` (``HOTPOOL_TEST_CACHE``) under a name keyed by a hash of what was
asked for, so a second run costs no network and seconds. Without a network a test skips
locally and fails in CI (``tests/services.missing_service``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from hotpool.main_server.vendoring import (
    RUNTIME_IMPLEMENTATION,
    RUNTIME_PLATFORMS,
    RUNTIME_PYTHON_VERSION,
)
from tests.services import missing_service

CACHE_DIR = Path(os.environ.get("HOTPOOL_TEST_CACHE", Path.home() / ".cache" / "hotpool-tests"))
# The runtime's platform, as `sam build` targets Lambda's and `hotpool deploy` vendors for it:
# both backends run CPython 3.11 on x86-64 Linux (the Docker image is Debian bookworm's python3)
RUNTIME_PIP_PLATFORM = (
    *(flag for platform in RUNTIME_PLATFORMS for flag in ("--platform", platform)),
    "--implementation", RUNTIME_IMPLEMENTATION,
    "--python-version", RUNTIME_PYTHON_VERSION, "--only-binary=:all:",
)  # fmt: skip
# what pip and npm print when the registry cannot be reached (as opposed to a bad pin)
NETWORK_FAILURES = (
    "NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
    "ConnectTimeoutError", "ReadTimeoutError", "ProxyError", "ENOTFOUND", "EAI_AGAIN",
    "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "network request to",
)  # fmt: skip
COMMAND_TIMEOUT_S = 600


def cached(kind: str, spec: list[str], build: Callable[[Path], None]) -> Path:
    """The cache folder for ``spec``, made by ``build(folder)`` on the first call.

    ``build`` writes into a private folder renamed into place when it succeeds, so a run
    killed half-way or a second run at the same time never sees a half-built folder.
    """
    digest = hashlib.sha256(json.dumps([kind, *spec]).encode()).hexdigest()[:16]
    target = CACHE_DIR / f"{kind}-{digest}"
    if target.is_dir():
        return target
    partial = CACHE_DIR / f".{kind}-{digest}.{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        build(partial)
        (partial / ".spec.json").write_text(json.dumps(spec, indent=1))
        try:
            partial.rename(target)
        except OSError:  # another run finished the same build first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def run(command: list[str], *, what: str, cwd: Path | None = None) -> str:
    """Run a registry client; a network failure skips (fails in CI), anything else fails."""
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
        )
    except FileNotFoundError:
        missing_service(f"{command[0]} is not installed; it fetches {what}")
    except subprocess.TimeoutExpired:
        missing_service(f"fetching {what} took over {COMMAND_TIMEOUT_S} s (a network problem?)")
    output = done.stdout + done.stderr
    if done.returncode != 0:
        if any(sign in output for sign in NETWORK_FAILURES):
            missing_service(f"cannot reach the registry for {what}: {output[-600:]}")
        pytest.fail(f"fetching {what} failed ({' '.join(command)}):\n{output[-3000:]}")
    return done.stdout


def pypi_wheel(requirement: str) -> Path:
    """The wheel of one PyPI distribution (no dependencies), downloaded, not installed."""

    def download(folder: Path) -> None:
        run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "-d", str(folder), requirement],
            what=requirement,
        )  # fmt: skip

    folder = cached("wheel", [requirement], download)
    return next(folder.glob("*.whl"))


def unpacked_wheel(requirement: str, members: tuple[str, ...]) -> Path:
    """The files of a wheel under the folders ``members``, unpacked (never imported here)."""

    def unpack(folder: Path) -> None:
        with zipfile.ZipFile(pypi_wheel(requirement)) as wheel:
            names = [n for n in wheel.namelist() if n.startswith(members)]
            wheel.extractall(folder, names)

    return cached("unpacked", [requirement, *members], unpack)


def npm_package(spec: str) -> Path:
    """An npm package's files (its ``package/`` folder), from ``npm pack``, not installed."""

    def pack(folder: Path) -> None:
        run(["npm", "pack", spec, "--silent", "--pack-destination", str(folder)], what=spec)
        tarball = next(folder.glob("*.tgz"))
        with tarfile.open(tarball) as tar:
            tar.extractall(folder, filter="data")
        tarball.unlink()

    return cached("npm", [spec], pack) / "package"


def npm_installed(specs: list[str]) -> Path:
    """A folder with ``specs`` installed by npm (its node_modules, package.json and lock), as
    a Node function's dependencies are installed for Lambda (production ones only)."""

    def install(folder: Path) -> None:
        (folder / "package.json").write_text('{"private": true}\n')
        run(
            ["npm", "install", "--omit=dev", "--no-audit", "--no-fund", "--silent", *specs],
            what=" ".join(specs),
            cwd=folder,
        )

    return cached("npm-install", sorted(specs), install)


def vendored(requirements: list[str]) -> Path:
    """A folder of ``requirements`` installed for the runtime's platform, as a package's
    dependencies are vendored for Lambda (``pip install --target``, as ``sam build`` does)."""

    def install(folder: Path) -> None:
        run(
            [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
             "--target", str(folder), *RUNTIME_PIP_PLATFORM, *requirements],
            what=" ".join(requirements),
        )  # fmt: skip

    return cached("site", sorted(requirements), install)
