"""Vendoring a function's ``requirements.txt`` where the CLI runs, as ``sam build`` does.

pip installs the dependencies for the runtime's platform and Python version, not the client's
(``--platform``, ``--implementation``, ``--python-version``, ``--only-binary=:all:``), into a
folder that is zipped beside the code; the code's own files win over a dependency's. Only
wheels will do: nothing is compiled, so a package with no wheel for the runtime fails the deploy
with its name. The result is cached by the hash of ``requirements.txt`` (and the target), so a
deploy with unchanged requirements runs no pip at all. The build happens here and not on a
Manager: production nodes often have no internet access.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hotpool.shared.packages import zip_directory

REQUIREMENTS = "requirements.txt"
# the runtime image's python3: Debian bookworm's CPython 3.11 (deploy/build-images.sh builds the
# image on bookworm); change both together
RUNTIME_PYTHON_VERSION = "3.11"
# wheels for glibc 2.17 (manylinux2014, which pip widens to manylinux2010 and manylinux1) up to
# bookworm's glibc 2.36: newer releases of pandas and others ship manylinux_2_28 wheels only
RUNTIME_GLIBC_MINORS = range(36, 16, -1)
RUNTIME_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in RUNTIME_GLIBC_MINORS),
    "manylinux2014_x86_64",
)
RUNTIME_IMPLEMENTATION = "cp"
PIP_TIMEOUT_S = 600
_IGNORED = shutil.ignore_patterns(".git", "__pycache__", ".hotpool", "*.pyc")


def _skipped(folder: str, names: list[str]) -> set[str]:
    """What copying a project leaves out: as zip_directory, virtual environments too."""
    venvs = {n for n in names if os.path.exists(os.path.join(folder, n, "pyvenv.cfg"))}
    return set(_IGNORED(folder, names)) | venvs


# what pip says when no distribution fits the target (e.g. an sdist-only package)
_NO_MATCH = re.compile(r"No matching distribution found for ([^\s;]+)")
_NO_VERSION = re.compile(
    r"Could not find a version that satisfies the requirement ([^\s;]+) \(from versions: ([^)]*)\)"
)
# what pip retries and gives up on when the index cannot be reached
_UNREACHABLE = re.compile(
    r"NewConnectionError|Connection refused|Name or service not known|"
    r"Temporary failure in name resolution|Network is unreachable|ConnectTimeoutError|"
    r"ProxyError|Max retries exceeded"
)


class VendoringError(Exception):
    """The dependencies could not be vendored; the message says which and why."""


def pip_command(requirements: Path, target: Path) -> list[str]:
    """The pip invocation that installs ``requirements`` for the runtime into ``target``."""
    return [
        sys.executable, "-m", "pip", "install", "--target", str(target), "-r", str(requirements),
        *(flag for platform in RUNTIME_PLATFORMS for flag in ("--platform", platform)),
        "--implementation", RUNTIME_IMPLEMENTATION,
        "--python-version", RUNTIME_PYTHON_VERSION, "--only-binary=:all:",
        "--no-compile", "--disable-pip-version-check", "--no-input", "--quiet",
    ]  # fmt: skip


def cache_key(requirements: bytes) -> str:
    """The cache entry of one ``requirements.txt`` for the runtime's target."""
    target = f"{RUNTIME_IMPLEMENTATION}{RUNTIME_PYTHON_VERSION}-{','.join(RUNTIME_PLATFORMS)}\n"
    target = target.encode()
    return hashlib.sha256(target + requirements).hexdigest()[:32]


def explain_pip_failure(output: str) -> str:
    """pip's failure in one sentence that says what to fix: the index out of reach, no such
    version, or no wheel for the runtime."""
    if unreachable := _UNREACHABLE.search(output):
        return (
            f"pip could not reach the package index ({unreachable.group(0)}); check the network "
            "or PIP_INDEX_URL, or deploy with --no-build"
        )
    found = _NO_VERSION.search(output) or _NO_MATCH.search(output)
    if found:
        requirement = found.group(1)
        versions = found.group(2) if found.re is _NO_VERSION else None
        if versions and versions != "none":
            shown = ", ".join(versions.split(", ")[-8:])
            return (
                f"{REQUIREMENTS}: no version of {requirement} has a wheel for the runtime "
                f"(CPython {RUNTIME_PYTHON_VERSION}, manylinux up to glibc 2.36); versions that "
                f"have one: {shown}"
            )
        return (
            f"{REQUIREMENTS}: {requirement} has no wheel for the runtime (CPython "
            f"{RUNTIME_PYTHON_VERSION}, manylinux up to glibc 2.36), or no such package exists "
            "on the index; nothing is compiled at deploy: pin a version that ships a wheel, or "
            "vendor it yourself and deploy with --no-build"
        )
    lines = [line for line in output.splitlines() if line.startswith("ERROR")] or [
        line for line in output.splitlines() if line.strip()
    ][-3:]
    return f"pip could not install {REQUIREMENTS}: " + " ".join(lines)[:800]


def vendor(requirements: Path, cache_dir: Path) -> Path:
    """The folder holding ``requirements`` installed for the runtime, built once per content."""
    key = cache_key(requirements.read_bytes())
    done = cache_dir / "requirements" / key
    if done.is_dir():
        return done
    done.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=done.parent, prefix=f".{key}-") as work:
        target = Path(work) / "site"
        try:
            result = subprocess.run(
                pip_command(requirements, target), capture_output=True, text=True,
                timeout=PIP_TIMEOUT_S, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise VendoringError(f"pip did not finish within {PIP_TIMEOUT_S} s") from None
        if result.returncode != 0:
            raise VendoringError(explain_pip_failure(result.stderr + result.stdout))
        target.mkdir(exist_ok=True)  # an empty requirements.txt installs nothing
        try:
            os.replace(target, done)  # atomic: a cache entry is whole or absent
        except OSError:
            if not done.is_dir():  # another deploy's identical build won the race
                raise
    return done


def build_package(
    directory: Path, *, build: bool = True, cache_dir: Path | None = None, prefix: str = ""
) -> bytes:
    """Zip ``directory``; with a ``requirements.txt`` (and ``build``), the dependencies are
    vendored into the zip, under ``prefix`` (``python`` for a layer), beside the files."""
    requirements = directory / REQUIREMENTS
    if not build or not requirements.is_file():
        return zip_directory(directory)
    if cache_dir is None:
        from hotpool.shared.client_config import client_cache_dir

        cache_dir = client_cache_dir()
    site = vendor(requirements, cache_dir)
    with tempfile.TemporaryDirectory(prefix="hotpool-build-") as staging:
        root = Path(staging) / "package"
        shutil.copytree(site, root / prefix if prefix else root, ignore=_skipped)
        # the function's own files last: where a name clashes, its file wins
        shutil.copytree(directory, root, ignore=_skipped, dirs_exist_ok=True)
        return zip_directory(root)
