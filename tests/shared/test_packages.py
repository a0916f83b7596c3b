"""Tests of shared.packages: every package rule, the bomb defences, extraction and zipping."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pathlib
import re
import shutil
import stat
import struct
import time
import tracemalloc
import types
import warnings
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotpool.shared import packages
from hotpool.shared.errors import InvalidPackage
from hotpool.shared.packages import PackageLimits, inspect_package, safe_extract, zip_directory

pytestmark = pytest.mark.unit

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
LIMITS = PackageLimits()
MAIN = "def handler(event, context):\n    return event\n"
MIB = 1024 * 1024


def make_zip(files: dict[str, bytes | str], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of ``files`` (name -> content) built in memory."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", method) as zf:
        warnings.simplefilter("ignore")  # duplicate names are wanted in some tests
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def zeros_zip(name: str, size: int, zip64: bool = False) -> bytes:
    """A zip of one deflated entry of ``size`` zero bytes, written in 1 MiB chunks."""
    buf = io.BytesIO()
    chunk = bytes(MIB)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w", force_zip64=zip64) as out:
            for _ in range(size // len(chunk)):
                out.write(chunk)
        zf.writestr("main.py", MAIN)
    return buf.getvalue()


def patch_headers(data: bytes, offsets: tuple[int, int], fmt: str, value: int) -> bytes:
    """Overwrite one field of the first entry in both its local and central header."""
    out = bytearray(data)
    central = zipfile.ZipFile(io.BytesIO(data)).start_dir
    assert data[:4] == b"PK\x03\x04" and data[central : central + 4] == b"PK\x01\x02"
    for start, offset in zip((0, central), offsets, strict=True):
        struct.pack_into(fmt, out, start + offset, value)
    return bytes(out)


def symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", MAIN)
        link = zipfile.ZipInfo("data.txt")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    return buf.getvalue()


def corrupt_data_zip() -> bytes:
    data = bytearray(make_zip({"main.py": MAIN * 50}))
    start = 30 + len("main.py")  # the local header is fixed size plus the name, no extra
    for i in range(start + 4, start + 12):
        data[i] ^= 0xFF
    return bytes(data)


def z(files: dict[str, str]) -> bytes:
    """A zip holding ``main.py`` with a valid handler plus ``files``."""
    return make_zip({"main.py": MAIN, **files})


def m(source: str) -> bytes:
    """A zip holding only ``main.py`` with ``source``."""
    return make_zip({"main.py": source})


REFUSED = [
    ("empty body", lambda: b"", "empty"),
    ("not a zip", lambda: b"hello, this is text", "not a valid zip"),
    ("truncated", lambda: z({})[:-10], "not a valid zip"),
    ("no entries", lambda: make_zip({}), "zip is empty"),
    ("absolute", lambda: z({"/etc/x": ""}), "absolute"),
    ("drive", lambda: z({"C:\\x": ""}), "absolute"),
    ("drive no sep", lambda: z({"C:x": ""}), "absolute"),
    ("dotdot", lambda: z({"../x.py": ""}), "'..'"),
    ("deep dotdot", lambda: z({"a/../../x": ""}), "'..'"),
    ("backslash", lambda: z({"a\\b.py": ""}), "backslash"),
    ("nul", lambda: z({"evil.pyX.txt": ""}).replace(b"pyX", b"py\0"), "NUL"),
    ("long name", lambda: z({"a" * 1025: ""}), "1025 characters"),
    ("symlink", symlink_zip, "symbolic link"),
    ("encrypted", lambda: patch_headers(z({}), (6, 8), "<H", 0x1), "encrypted"),
    ("bad crc", lambda: patch_headers(z({}), (14, 16), "<I", 0xDEADBEEF), "corrupt"),
    ("corrupt data", corrupt_data_zip, "corrupt"),
    ("bzip2", lambda: make_zip({"main.py": MAIN}, zipfile.ZIP_BZIP2), "compression method 12"),
    ("duplicate", lambda: z({"maim.py": ""}).replace(b"maim.py", b"main.py"), "more than once"),
    ("file and dir", lambda: z({"a": "", "a/b": ""}), "which is a file"),
    (
        "missing module",
        lambda: make_zip({"app.py": MAIN, "util.py": ""}),
        "handler module 'main' not found: the zip has no main.py (entries: app.py, util.py)",
    ),
    ("wrapped", lambda: make_zip({"hello/": "", "hello/main.py": MAIN}), "folder's contents"),
    ("mac", lambda: make_zip({"hello/main.py": MAIN, "__MACOSX/hello/._main.py": ""}), "'hello/'"),
    ("syntax error", lambda: m("x = 1\ndef handler(:\n"), "syntax error in main.py line 2"),
    ("no function", lambda: m("def f(e, c): pass\n"), "function 'handler' not found in main.py"),
    ("nested function", lambda: m("def f():\n    def handler(e, c): pass\n"), "not found"),
    ("only used", lambda: m("print(handler)\nx: int\n"), "not found"),
    ("star import", lambda: m("from impl import *\n"), "import *"),
    ("nul in source", lambda: m("def handler(e, c): pass\n\0"), "main.py"),
]


@pytest.mark.parametrize(("factory", "message"), [pytest.param(f, m, id=n) for n, f, m in REFUSED])
def test_refused(factory, message):
    with pytest.raises(InvalidPackage) as info:
        inspect_package(factory(), "main.handler", LIMITS)
    assert message.lower() in str(info.value).lower()
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("handler", "must look like 'module.function'"),
        ("main.", "must look like"),
        (".handler", "must look like"),
        ("ma-in.handler", "must look like"),
        ("main.class", "must look like"),
        ("pkg.mod.handler", "the zip has no pkg/mod.py"),
        ("pkg/missing.handler", "the zip has no pkg/missing.py"),
        ("pkg/mod/.handler", "must look like"),
        ("../pkg/other.handler", "plain names without dots"),
        ("pkg.v1/other.handler", "plain names without dots"),
        ("pkg//other.handler", "plain names without dots"),
        ("/pkg/other.handler", "plain names without dots"),
    ],
)
@pytest.mark.parametrize("root", [{}, {"main.py": MAIN}], ids=["pkg only", "pkg and main"])
def test_bad_handler_refused(handler, message, root):
    # "pkg only" also checks that a single folder named like the handler's package is taken
    # for that package, not for a folder wrapping the package.
    data = make_zip({"pkg/__init__.py": "", "pkg/other.py": MAIN, **root})
    with pytest.raises(InvalidPackage, match=re.escape(message)):
        inspect_package(data, handler, LIMITS)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        pytest.param(PackageLimits(max_compressed_bytes=100), "over the limit of 100", id="big"),
        pytest.param(PackageLimits(max_entries=2), "3 entries, over the limit of 2", id="count"),
        pytest.param(PackageLimits(max_path_len=6), "over the limit of 6", id="path"),
        pytest.param(PackageLimits(max_uncompressed_bytes=100), "expands to", id="total"),
    ],
)
def test_limits(limits, message):
    data = make_zip({"main.py": MAIN, "a.txt": "x" * 60, "b.txt": "y"})
    with pytest.raises(InvalidPackage) as info:
        inspect_package(data, "main.handler", limits)
    assert message in str(info.value)


VALID = [
    ("def", {"main.py": MAIN}, "main.handler"),
    ("async def", {"main.py": "async def handler(e, c):\n    return 1\n"}, "main.handler"),
    ("alias", {"main.py": "def other(e, c):\n    pass\nhandler = other\n"}, "main.handler"),
    ("tuple target", {"main.py": "a, (b, *handler) = 1, (2, 3)\n"}, "main.handler"),
    ("annotated", {"main.py": "handler: object = print\n"}, "main.handler"),
    ("import alias", {"main.py": "from impl import run as handler\n"}, "main.handler"),
    ("import", {"main.py": "import handler\n"}, "main.handler"),
    ("class", {"main.py": "class handler:\n    pass\n"}, "main.handler"),
    ("under if", {"main.py": "if True:\n    def handler(e, c): pass\n"}, "main.handler"),
    ("under try", {"main.py": "try:\n    pass\nexcept E:\n    handler = 1\n"}, "main.handler"),
    ("dotted", {"pkg/__init__.py": "", "pkg/mod.py": MAIN, "pkg/x.py": ""}, "pkg.mod.handler"),
    ("package", {"pkg/__init__.py": MAIN}, "pkg.handler"),
    ("namespace package", {"pkg/mod.py": MAIN, "main.py": ""}, "pkg.mod.handler"),
    ("folder named in handler", {"hello/main.py": MAIN}, "hello.main.handler"),
    ("dir entries", {"lib/": "", "lib/x.py": "", "./": "", "main.py": MAIN}, "main.handler"),
    ("utf-8 bom", {"main.py": "\ufeff# é\n" + MAIN}, "main.handler"),
    # Serverless Framework and CDK apps name the folder with a slash
    ("folder/module", {"src/handler.py": MAIN}, "src/handler.handler"),
    ("folders/module", {"src/api/v1.py": MAIN, "main.py": ""}, "src/api/v1.handler"),
    ("folder/package.module", {"src/pkg/mod.py": MAIN}, "src/pkg.mod.handler"),
    ("dashed folder", {"my-app/handler.py": MAIN}, "my-app/handler.handler"),
]


@pytest.mark.parametrize(("files", "handler"), [pytest.param(f, h, id=n) for n, f, h in VALID])
@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_accepted(files, handler, method):
    data = make_zip(files, method)
    package = inspect_package(data, handler, LIMITS)
    assert package.data == data
    assert package.sha256 == hashlib.sha256(data).hexdigest()
    assert package.entries == len(files)
    assert package.uncompressed_bytes == sum(len(str(c).encode()) for c in files.values())


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zeros_zip("bomb.bin", 300 * MIB, zip64=True)


def test_zip_bomb_refused_fast_and_small(bomb):
    assert len(bomb) < MIB
    tracemalloc.start()
    started = time.monotonic()
    try:
        # Both the declared total (291.7 MiB) and the ratio (1028:1) give it away.
        with pytest.raises(InvalidPackage, match=r"over the limit of 250\.0 MiB|zip bombs"):
            inspect_package(bomb, "main.handler", LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 10 * MIB


def test_bomb_ratio_refused_under_total_limit():
    data = zeros_zip("zeros.bin", 20 * MIB)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("zeros.bin")
    assert info.file_size / info.compress_size > 1000, "deflate no longer reaches 1000:1"
    with pytest.raises(InvalidPackage, match="zip bombs"):
        inspect_package(data, "main.handler", LIMITS)


def test_lying_header_refused():
    # The central directory (which zipfile trusts) and local header claim 1000 bytes for what is
    # really 50 MiB of zeros. zipfile stops at the declared size and the CRC then mismatches.
    data = patch_headers(zeros_zip("liar.bin", 50 * MIB), (22, 24), "<I", 1000)
    assert zipfile.ZipFile(io.BytesIO(data)).getinfo("liar.bin").file_size == 1000
    started = time.monotonic()
    with pytest.raises(InvalidPackage, match="corrupt"):
        inspect_package(data, "main.handler", LIMITS)
    assert time.monotonic() - started < 2


class EndlessZeros:
    """A member stream that never ends, as a lying header could make one."""

    def __init__(self) -> None:
        self.produced = 0

    def read(self, n: int) -> bytes:
        self.produced += n
        return bytes(n)


@pytest.mark.parametrize(
    ("compressed", "budget", "message", "stop_at"),
    [
        pytest.param(10**9, 5 * MIB, "size limit", 5 * MIB, id="budget"),
        pytest.param(100, 10**9, "zip bombs", packages.ratio_floor_bytes, id="ratio"),
    ],
)
def test_streaming_stops_at_first_excess(compressed, budget, message, stop_at):
    # The declared-size checks hide this path from real zips (zipfile stops at the declared
    # size), so it is driven directly with a stream that never ends.
    stream = EndlessZeros()
    with pytest.raises(InvalidPackage, match=message):
        packages._drain(stream, "x", compressed, budget)
    assert stream.produced <= stop_at + packages.chunk_bytes


def accept_or_refuse(data: bytes) -> None:
    """Inspect ``data``; InvalidPackage is the only exception allowed out."""
    with contextlib.suppress(InvalidPackage):
        inspect_package(data, "main.handler", LIMITS)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(data):
    accept_or_refuse(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_zip_never_crashes(draw):
    data = bytearray(make_zip({"main.py": MAIN, "pkg/util.py": "x = 1\n" * 20}))
    for _ in range(draw.draw(st.integers(1, 8))):
        data[draw.draw(st.integers(0, len(data) - 1))] = draw.draw(st.integers(0, 255))
    accept_or_refuse(bytes(data))


def is_safe(name: str) -> bool:
    parts = name.split("/")
    return not (name.startswith("/") or "\\" in name or "\0" in name or ".." in parts)


# zipfile cannot write a name that is empty once cut at its first NUL.
NAMES = st.text(min_size=1, max_size=20).filter(lambda n: not n.startswith("\0"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(NAMES, max_size=5), st.booleans())
def test_random_member_names(names, with_main):
    files: dict[str, bytes | str] = dict.fromkeys(names, "")
    if with_main:
        files["main.py"] = MAIN
    data = make_zip(files)
    try:
        package = inspect_package(data, "main.handler", LIMITS)
    except InvalidPackage:
        return
    members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    assert all(is_safe(info.orig_filename) for info in members)
    assert package.entries == len(members)


def test_safe_extract_writes_package(tmp_path):
    data = make_zip({"main.py": MAIN, "pkg/": "", "pkg/mod.py": "x = 1\n"})
    safe_extract(data, tmp_path / "dest")
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert written == ["dest", "dest/main.py", "dest/pkg", "dest/pkg/mod.py"]
    assert (tmp_path / "dest/main.py").read_text() == MAIN


@pytest.mark.parametrize("name", ["../escape.py", "a/../../escape.py", "/tmp/hp-escape.py"])
def test_safe_extract_refuses_escape(tmp_path, name):
    dest = tmp_path / "dest"
    with pytest.raises(InvalidPackage, match="outside"):
        safe_extract(make_zip({name: "x"}), dest)
    assert not (tmp_path / "escape.py").exists()
    assert not pathlib.Path("/tmp/hp-escape.py").exists()


def test_safe_extract_does_not_follow_symlink_in_dest(tmp_path):
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    dest.mkdir()
    (dest / "link").symlink_to(outside)
    with pytest.raises(InvalidPackage, match="outside"):
        safe_extract(make_zip({"link/evil.py": "x"}), dest)
    assert list(outside.iterdir()) == []


def test_safe_extract_refuses_symlink_member(tmp_path):
    with pytest.raises(InvalidPackage, match="safely"):
        safe_extract(symlink_zip(), tmp_path)


def build_tree(root: pathlib.Path) -> None:
    for rel, content in {
        "main.py": MAIN,
        "sub/util.py": "x = 1\n",
        "run.sh": "#!/bin/sh\n",
        "__pycache__/main.cpython-311.pyc": "junk",
        "sub/__pycache__/util.cpython-311.pyc": "junk",
        "stale.pyc": "junk",
        ".git/config": "[core]\n",
        ".hotpool/state.json": "{}",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    (root / "run.sh").chmod(0o755)


def test_zip_directory_leaves_virtual_environments_out(tmp_path):
    (tmp_path / "main.py").write_text("def handler(e, c):\n    return 1\n")
    for venv in (".venv", "env"):
        (tmp_path / venv / "lib").mkdir(parents=True)
        (tmp_path / venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
        (tmp_path / venv / "lib" / "big.py").write_text("X = 1\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mine.py").write_text("Y = 2\n")

    names = zipfile.ZipFile(io.BytesIO(zip_directory(tmp_path))).namelist()

    assert names == ["lib/mine.py", "main.py"]


def test_zip_directory_is_deterministic(tmp_path):
    build_tree(tmp_path / "a")
    first = zip_directory(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    os.utime(tmp_path / "b/main.py", (1e9, 1e9))
    assert zip_directory(tmp_path / "a") == first
    assert zip_directory(tmp_path / "b") == first
    members = zipfile.ZipFile(io.BytesIO(first)).infolist()
    assert [m.filename for m in members] == ["main.py", "run.sh", "sub/util.py"]
    assert {m.date_time for m in members} == {(1980, 1, 1, 0, 0, 0)}
    assert {m.compress_type for m in members} == {zipfile.ZIP_DEFLATED}
    assert members[1].external_attr >> 16 == stat.S_IFREG | 0o755
    assert inspect_package(first, "main.handler", LIMITS).entries == 3


def test_zip_directory_changes_with_content(tmp_path):
    build_tree(tmp_path)
    before = zip_directory(tmp_path)
    (tmp_path / "main.py").write_text(MAIN + "# changed\n")
    assert zip_directory(tmp_path) != before


EXAMPLE_DIRS = sorted(p for p in EXAMPLES.iterdir() if (p / "main.py").is_file())


def test_all_examples_present():
    names = [p.name for p in EXAMPLE_DIRS]
    assert names == ["async_hello", "hello", "printer", "raises", "slow", "ws_problem"]
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == sorted(
        [*names, "hello_image", "hello_node", "hello_provided"]
    )


def test_the_node_example_is_a_valid_node_package():
    package = zip_directory(EXAMPLES / "hello_node")
    assert inspect_package(package, "index.handler", LIMITS, "nodejs").entries == 2


@pytest.mark.parametrize("example", EXAMPLE_DIRS, ids=lambda p: p.name)
def test_example_is_a_valid_package(example):
    package = inspect_package(zip_directory(example), "main.handler", LIMITS)
    assert package.entries == 1


def load_example(name: str):
    """The handler of an example, run from source (no __pycache__ left in examples/)."""
    path = EXAMPLES / name / "main.py"
    namespace = {"__name__": f"example_{name}"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace["handler"]


async def test_examples_behave(capsys):
    context = types.SimpleNamespace(
        aws_request_id="req-1", get_remaining_time_in_millis=lambda: 1234
    )
    assert load_example("hello")(None, context) == {"message": "Hello, world!"}
    assert load_example("hello")({"name": "Ada"}, context) == {"message": "Hello, Ada!"}
    with pytest.raises(ValueError, match="'k': 1"):
        load_example("raises")({"k": 1}, context)
    slow = load_example("slow")({"seconds": 0}, context)
    assert slow["remaining_ms"] == 1234 and slow["slept_s"] < 1
    greeting = await load_example("async_hello")({"name": "Ada"}, context)
    assert greeting == {"message": "Hello, Ada!", "request_id": "req-1"}
    assert load_example("printer")({}, context) == {"printed": 4}
    out, err = capsys.readouterr()
    assert out.count("\n") == 3 and err.count("\n") == 1
