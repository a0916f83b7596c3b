"""Validating, extracting and building function code packages (zip files).

An uploaded package is refused with :class:`~shared.errors.InvalidPackage` before anything is
stored unless it is a well-formed zip that cannot escape its directory, cannot exhaust memory or
disk when expanded, and whose handler (``module.function``) names a function bound at the top
level of a module in the zip. Nothing in the package is ever executed here: the handler module is
only parsed with :mod:`ast`.
"""

from __future__ import annotations

import ast
import hashlib
import io
import keyword
import os
import pathlib
import re
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from hotpool.shared.errors import InvalidPackage
from hotpool.shared.node_packages import check_node_handler

MIB = 1024 * 1024
# An entry above this size that compresses better than max_ratio is treated as a zip bomb;
# deflate tops out near 1030:1, so honest data never gets there.
ratio_floor_bytes = 1 * MIB
max_ratio = 1000
chunk_bytes = 64 * 1024
# Only these methods are accepted: deflate bounds its output per read, whereas CPython's bzip2
# and lzma readers decompress a whole compressed chunk at once (a bomb could expand to GiBs).
_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
# What zipfile and zlib raise on damaged archives. Fuzzing (see the hypothesis tests) hits
# zlib.error, ValueError (incl. UnicodeDecodeError), EOFError and NotImplementedError; the rest
# are raised by zipfile's header parsing (struct, seeks) and its encryption check.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)
_DRIVE = re.compile(r"^[A-Za-z]:")
# Checked on ZipInfo.orig_filename: zipfile silently cuts ZipInfo.filename at the first NUL.
_NAME_RULES: tuple[tuple[Callable[[str], object], str], ...] = (
    (lambda n: "\0" in n, "contains a NUL byte"),
    (
        lambda n: n.startswith("/") or _DRIVE.match(n),
        "is an absolute path: entries must be relative to the zip's root",
    ),
    (
        lambda n: "\\" in n,
        "contains a backslash: build the zip with a tool that separates folders with '/'",
    ),
    (lambda n: ".." in n.split("/"), "has a '..' component: entries must stay inside the package"),
)
# macOS adds this folder when zipping in Finder; ignored when spotting a zip wrapped in a folder.
_NOISE_FOLDERS = {"__MACOSX"}
_SKIP_NAMES = {"__pycache__", ".git", ".hotpool"}
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PackageLimits:
    """Upper bounds an uploaded package must stay within."""

    max_compressed_bytes: int = 50 * MIB
    max_uncompressed_bytes: int = 250 * MIB
    max_entries: int = 10_000
    max_path_len: int = 1024


@dataclass(frozen=True)
class CodePackage:
    """A package that passed inspection."""

    data: bytes  # the zip bytes as uploaded
    sha256: str  # hex digest of data
    uncompressed_bytes: int
    entries: int


def inspect_package(
    data: bytes, handler: str | None, limits: PackageLimits, runtime: str = "python"
) -> CodePackage:
    """Check an uploaded zip against every package rule; raise InvalidPackage on the first
    broken one, with a message telling the user what to fix. A layer has no ``handler``; a
    ``provided`` function's is text its own runtime reads, so only a Python one is checked
    (a custom runtime's ``bootstrap`` may come from a layer, as on Lambda)."""
    _check_size(data, limits)
    with _open_zip(data) as zf:
        infos = zf.infolist()
        what = "your handler module" if handler is not None else "a python/ folder (a layer)"
        _check_entries(infos, limits, what=what)
        total = _expand_all(zf, infos, limits)
        if handler is not None and runtime == "nodejs":
            names = [info.orig_filename for info in infos]
            check_node_handler(names, handler, _single_folder(names))
        elif handler is not None and runtime == "python":
            _check_handler(zf, infos, handler)
    return CodePackage(data, hashlib.sha256(data).hexdigest(), total, len(infos))


def _check_size(data: bytes, limits: PackageLimits) -> None:
    if not data:
        raise InvalidPackage("the package is empty: upload a zip file holding your .py files")
    if len(data) > limits.max_compressed_bytes:
        raise InvalidPackage(
            f"the package is {_size(len(data))}, over the limit of "
            f"{_size(limits.max_compressed_bytes)}: move large data out of the package"
        )


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as exc:
        raise InvalidPackage(f"the package is not a valid zip file ({exc}): upload a .zip") from exc


def _check_entries(
    infos: list[zipfile.ZipInfo], limits: PackageLimits, *, what: str = "your handler module"
) -> None:
    if not infos:
        raise InvalidPackage(f"the zip is empty: it must hold {what}")
    if len(infos) > limits.max_entries:
        raise InvalidPackage(
            f"the zip has {len(infos)} entries, over the limit of {limits.max_entries}"
        )
    seen: set[str] = set()
    for info in infos:
        _check_name(info.orig_filename, limits.max_path_len)
        if info.orig_filename in seen:
            raise InvalidPackage(f"entry {info.orig_filename!r} appears more than once in the zip")
        seen.add(info.orig_filename)
        _check_member(info)
    _check_file_dir_clash(infos)
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_uncompressed_bytes:
        raise InvalidPackage(
            f"the zip expands to {_size(declared)}, over the limit of "
            f"{_size(limits.max_uncompressed_bytes)} uncompressed"
        )


def _check_name(name: str, max_len: int) -> None:
    """Refuse a name that could escape the package directory or confuse a filesystem."""
    if len(name) > max_len:
        raise InvalidPackage(
            f"entry name {name[:60]!r}... is {len(name)} characters, over the limit of {max_len}"
        )
    if not name:
        raise InvalidPackage("an entry of the zip has an empty name")
    for breaks_rule, problem in _NAME_RULES:
        if breaks_rule(name):
            raise InvalidPackage(f"entry {name!r} {problem}")


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.orig_filename
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidPackage(
            f"entry {name!r} is a symbolic link: put the file it points to in the zip instead"
        )
    if info.flag_bits & 0x1:
        raise InvalidPackage(f"entry {name!r} is encrypted: upload a zip without a password")
    if info.compress_type not in _METHODS:
        raise InvalidPackage(
            f"entry {name!r} uses compression method {info.compress_type}: only deflate "
            "(the default of zip tools) and no compression are accepted"
        )
    _check_ratio(name, info.file_size, info.compress_size)


def _check_ratio(name: str, size: int, compressed: int) -> None:
    if size > ratio_floor_bytes and size > max_ratio * max(compressed, 1):
        raise InvalidPackage(
            f"entry {name!r} expands {size // max(compressed, 1)}:1 (more than {max_ratio}:1), "
            "which is how zip bombs look: refused"
        )


def _check_file_dir_clash(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse ``a`` and ``a/b`` both as files: the package could not be extracted."""
    files = {info.orig_filename for info in infos if not info.orig_filename.endswith("/")}
    for name in sorted(files):
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in files:
                raise InvalidPackage(f"entry {name!r} sits under {parent!r}, which is a file")


def _expand_all(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: PackageLimits) -> int:
    """Decompress every member in chunks and return the real total size. Headers can lie, so
    the bytes actually produced are counted, stopping as soon as the limit is passed."""
    total = 0
    for info in infos:
        budget = limits.max_uncompressed_bytes - total
        try:
            with zf.open(info) as stream:
                total += _drain(stream, info.orig_filename, info.compress_size, budget)
        except _ZIP_ERRORS as exc:
            raise InvalidPackage(
                f"entry {info.orig_filename!r} is corrupt ({exc}): rebuild the zip"
            ) from exc
    return total


def _drain(stream: IO[bytes], name: str, compressed: int, budget: int) -> int:
    """Read a member to its end without keeping it; return its size. Raise InvalidPackage once
    it passes ``budget`` bytes or the bomb ratio."""
    size = 0
    while chunk := stream.read(chunk_bytes):
        size += len(chunk)
        if size > budget:
            raise InvalidPackage(f"entry {name!r} expands past the package's size limit")
        _check_ratio(name, size, compressed)
    return size


def _check_handler(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], handler: str) -> None:
    module, function = _split_handler(handler)
    names = [info.orig_filename for info in infos]
    path = _find_module(module, set(names))
    if path is None:
        raise InvalidPackage(_missing_module_message(module, names))
    tree = _parse(path, zf.read(path))
    bound = set(_top_level_names(tree.body))
    if function not in bound:
        hint = ""
        if "*" in bound:
            hint = f" ({path} uses 'from ... import *', which cannot be checked: import it by name)"
        raise InvalidPackage(f"handler function {function!r} not found in {path}{hint}")


def _split_handler(handler: str) -> tuple[str, str]:
    """The module and function of ``module.function`` or ``dir/module.function``; the module
    comes back with its folders, ``dir/module`` (the runtime imports it as ``dir.module``,
    as Lambda's does)."""
    *folders, dotted = handler.split("/")
    module, _, function = dotted.rpartition(".")
    parts = [*module.split("."), function]
    if not module or not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        raise InvalidPackage(
            f"handler {handler!r} must look like 'module.function' or 'dir/module.function' "
            "(e.g. 'main.handler', 'src/handler.hello'), each dotted part a Python identifier"
        )
    if not all(f and f not in (".", "..") and "." not in f for f in folders):
        raise InvalidPackage(
            f"handler {handler!r}: the folders before the module must be plain names without "
            "dots (Lambda imports 'a.b/m.f' as the package a.b.m, not the folder 'a.b')"
        )
    return "/".join([*folders, module]), function


def _find_module(module: str, names: set[str]) -> str | None:
    base = module.replace(".", "/")
    # A package wins over a module of the same name, as in Python's import system.
    for candidate in (f"{base}/__init__.py", f"{base}.py"):
        if candidate in names:
            return candidate
    return None


def _missing_module_message(module: str, names: list[str]) -> str:
    wanted = f"{module.replace('.', '/')}.py"
    folder = _single_folder(names)
    # A folder named like the handler's top package is that package, not a wrapper.
    if folder is not None and folder != module.replace("/", ".").split(".", 1)[0]:
        return (
            f"handler module {module!r} not found: the zip wraps everything in the folder "
            f"'{folder}/'. Zip the folder's contents instead of the folder itself "
            f"(e.g. cd {folder} && zip -r ../package.zip .)"
        )
    files = [n for n in names if not n.endswith("/")]
    shown = ", ".join(files[:5]) + (", ..." if len(files) > 5 else "")
    return f"handler module {module!r} not found: the zip has no {wanted} (entries: {shown})"


def _single_folder(names: list[str]) -> str | None:
    """The one top-level folder holding every entry, if the zip is shaped like that."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n} - _NOISE_FOLDERS
    if len(tops) == 1 and all("/" in n for n in names):
        return tops.pop()
    return None


def _parse(path: str, source: bytes) -> ast.Module:
    try:
        return ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise InvalidPackage(
            f"syntax error in {path} line {exc.lineno}: {exc.msg}; fix the module and re-upload"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidPackage(f"{path} cannot be parsed as Python: {exc}") from exc


def _top_level_names(body: list[ast.stmt]) -> Iterator[str]:
    """Names a module body binds, looking into top-level if/try/with/for/while/match blocks.
    ``*`` stands for a star import."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                yield from _target_names(target)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            yield from _target_names(node.target)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                yield alias.asname or alias.name.split(".", 1)[0]
        else:
            for block in _sub_blocks(node):
                yield from _top_level_names(block)


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _target_names(element.value if isinstance(element, ast.Starred) else element)


def _sub_blocks(node: ast.stmt) -> Iterator[list[ast.stmt]]:
    for field in ("body", "orelse", "finalbody"):
        block = getattr(node, field, None)
        if isinstance(block, list):
            yield block
    for handler in getattr(node, "handlers", ()):
        yield handler.body
    for case in getattr(node, "cases", ()):
        yield case.body


def safe_extract(data: bytes, dest: pathlib.Path) -> None:
    """Extract an inspected package into ``dest``, refusing any member that would land outside
    it (defence in depth: inspection already refused such names)."""
    root = pathlib.Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with _open_zip(data) as zf:
        for info in zf.infolist():
            target = _target(root, info)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # Only read errors are the package's fault; a full disk is ours and propagates.
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, chunk_bytes)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise InvalidPackage(f"entry {info.orig_filename!r} cannot be extracted") from exc


def _target(root: pathlib.Path, info: zipfile.ZipInfo) -> pathlib.Path:
    name = info.orig_filename
    if "\0" in name or "\\" in name or stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidPackage(f"entry {name!r} cannot be extracted safely")
    target = (root / name).resolve()
    if not target.is_relative_to(root) or (target == root and not info.is_dir()):
        raise InvalidPackage(f"entry {name!r} would be extracted outside the package directory")
    return target


def zip_directory(path: str | os.PathLike[str]) -> bytes:
    """Zip the contents of a directory deterministically: identical files give identical bytes.

    Entries are sorted, timestamps fixed to 1980-01-01 and modes normalised; ``__pycache__``,
    ``.git``, ``.hotpool``, ``*.pyc`` and virtual environments are left out. Symlinked files
    are stored as the file they point to; symlinked directories are not followed.
    """
    root = pathlib.Path(path)
    if not root.is_dir():  # os.walk would silently give an empty zip
        raise NotADirectoryError(f"{root} is not a directory")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in _package_files(root):
            _add_file(zf, file, file.relative_to(root).as_posix())
    return buf.getvalue()


def _package_files(root: pathlib.Path) -> list[pathlib.Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        # a virtual environment (pyvenv.cfg at its top) is the client's, never the runtime's
        dirs[:] = [
            d for d in dirs
            if d not in _SKIP_NAMES and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
        ]  # fmt: skip
        for name in files:
            file = pathlib.Path(folder, name)
            if name not in _SKIP_NAMES and not name.endswith(".pyc") and file.is_file():
                found.append(file)
    return sorted(found, key=lambda f: f.relative_to(root).as_posix())


def _add_file(zf: zipfile.ZipFile, file: pathlib.Path, name: str) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, on every platform, so the bytes do not depend on the OS
    st = file.stat()
    mode = 0o755 if st.st_mode & 0o111 else 0o644
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.file_size = st.st_size
    with open(file, "rb") as src, zf.open(info, "w") as dst:
        shutil.copyfileobj(src, dst, chunk_bytes)


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"
