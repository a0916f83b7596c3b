"""Function packages (zips) built from third-party files and vendored dependencies, cached.

A package is a mapping of archive names to file contents plus folders of vendored
dependencies unpacked at the zip's root, as `sam build` and `serverless package` lay out a
Lambda package. Zipping a framework costs seconds, so the zip is cached too, keyed by the
content of its files and the (already content-keyed) dependency folders.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lambda_compat.sources import cached

# what pip leaves beside a package that a Lambda package need not carry
SKIPPED_PARTS = {"__pycache__", "bin"}


@dataclass(frozen=True)
class App:
    """A deployable function: its package and the settings it is deployed with."""

    name: str
    handler: str
    code: bytes
    settings: Mapping[str, Any] = field(default_factory=dict)

    def deploy_params(self, **extra: Any) -> dict[str, Any]:
        return {"handler": self.handler, **self.settings, **extra}


def zip_package(files: Mapping[str, bytes], sites: Sequence[Path] = ()) -> bytes:
    """A zip of ``files`` and, at its root, every file of the folders ``sites``."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    spec = [digest.hexdigest(), *(str(site) for site in sites)]

    def build(folder: Path) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for site in sites:
                for path in sorted(site.rglob("*")):
                    relative = path.relative_to(site)
                    if path.is_file() and not SKIPPED_PARTS & set(relative.parts):
                        if relative.name != ".spec.json":
                            zf.write(path, relative.as_posix())
            for name, data in files.items():
                zf.writestr(name, data)
        (folder / "package.zip").write_bytes(buf.getvalue())

    return (cached("zip", spec, build) / "package.zip").read_bytes()


def read_tree(root: Path, prefix: str = "") -> dict[str, bytes]:
    """Every file under ``root`` as archive names (under ``prefix``) and contents."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.name != ".spec.json":
            files[prefix + path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def source(text: str) -> bytes:
    """Python source written in a test, dedented as the module's own text."""
    import textwrap

    return textwrap.dedent(text).lstrip("\n").encode()
