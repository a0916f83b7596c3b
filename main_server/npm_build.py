"""Installing a Node.js function's production dependencies where the CLI runs, as `sam build`
does for Lambda: a folder with a package.json is copied (never touched itself), npm installs
its production dependencies into the copy (``npm ci --omit=dev`` with a package-lock.json or
npm-shrinkwrap.json, ``npm install --omit=dev`` without), and the copy is zipped. The folder's
own node_modules is left out of the copy, so the package holds exactly what the manifest and
lock name. Install scripts run as npm runs them: a native module is built for this machine's
Node and platform, which must match the runtime's (Node 18 on x86-64 Linux in the image).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hotpool.main_server.vendoring import VendoringError
from hotpool.shared.packages import zip_directory

MANIFEST = "package.json"
LOCK_FILES = ("package-lock.json", "npm-shrinkwrap.json")
NPM_TIMEOUT_S = 600
# the one-line description npm prints before a command's usage
NPM_HELP_LINES = {"Clean install a project", "Install a package"}
_IGNORED = shutil.ignore_patterns("node_modules", ".git", ".hotpool", "__pycache__")


def npm_command(npm: str, locked: bool) -> list[str]:
    """The npm invocation that installs a project's production dependencies in place."""
    action = "ci" if locked else "install"
    return [npm, action, "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"]


def build_node_package(directory: Path, *, build: bool = True) -> bytes:
    """Zip ``directory``; with a package.json (and ``build``), with its production
    dependencies installed by npm into a temporary copy first."""
    if not build or not (directory / MANIFEST).is_file():
        return zip_directory(directory)
    npm = shutil.which("npm")
    if npm is None:
        raise VendoringError(
            f"{directory / MANIFEST} names dependencies, and npm is not installed here to "
            "install them: install npm (Debian: apt-get install npm), or deploy with "
            "--no-build to upload the folder's node_modules as it is"
        )
    with tempfile.TemporaryDirectory(prefix="hotpool-npm-") as staging:
        root = Path(staging) / "package"
        shutil.copytree(directory, root, ignore=_IGNORED)
        locked = any((root / name).is_file() for name in LOCK_FILES)
        command = npm_command(npm, locked)
        try:
            result = subprocess.run(
                command, cwd=root, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
                check=False, env={**os.environ, "NODE_ENV": "production"},
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise VendoringError(f"npm did not finish within {NPM_TIMEOUT_S} s") from None
        if result.returncode != 0:
            raise VendoringError(explain_npm_failure(command[1], result))
        return zip_directory(root)


def explain_npm_failure(action: str, result: subprocess.CompletedProcess[str]) -> str:
    """npm's failure in a few lines: its own ``npm error`` lines say what is wrong (a lock out
    of step with package.json, a version that does not exist, the registry out of reach)."""
    output = result.stderr + result.stdout
    lines = []
    for line in output.splitlines():
        text = line.removeprefix("npm ERR!").removeprefix("npm error").strip()
        if text.startswith("Usage:"):  # npm's help for the command follows: not the reason
            break
        if (
            text
            and line.startswith(("npm ERR!", "npm error"))
            and text != "Clean install a project"
        ):
            lines.append(line)
    lines = lines or [line for line in output.splitlines() if line.strip()][-5:]
    shown = "\n".join(lines[:8])
    return f"npm {action} failed (exit status {result.returncode}):\n{shown}"
