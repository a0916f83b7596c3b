"""Tests of shared.codestore.LocalCodeStore: content-addressed packages in a directory."""

from __future__ import annotations

import hashlib

import pytest

from hotpool.shared.codestore import LocalCodeStore, package_key
from hotpool.shared.errors import NotFound

pytestmark = pytest.mark.unit

DATA = b"PK\x05\x06" + b"\x00" * 18  # an empty zip


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path) -> LocalCodeStore:
    return LocalCodeStore(tmp_path / "code")


async def test_put_returns_the_content_key_and_get_returns_the_bytes(store):
    key = await store.put(sha(DATA), DATA)

    assert key == package_key(sha(DATA)) == f"{sha(DATA)}.zip"
    assert await store.get(key) == DATA


async def test_put_is_idempotent_and_writes_the_file_once(store, tmp_path):
    key = await store.put(sha(DATA), DATA)
    path = tmp_path / "code" / key
    before = path.stat()

    again = await store.put(sha(DATA), DATA)

    after = path.stat()
    assert again == key
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert await store.get(key) == DATA


async def test_put_leaves_no_temporary_files(store, tmp_path):
    await store.put(sha(DATA), DATA)
    await store.put(sha(b"other"), b"other")

    names = sorted(p.name for p in (tmp_path / "code").iterdir())
    assert names == sorted([f"{sha(DATA)}.zip", f"{sha(b'other')}.zip"])


async def test_unknown_key_is_not_found(store):
    with pytest.raises(NotFound):
        await store.get(f"{'0' * 64}.zip")


@pytest.mark.parametrize(
    "key",
    [
        "../secret.zip",
        "..",
        "..zip",
        "../../etc/passwd",
        "sub/dir.zip",
        "/etc/passwd.zip",
        "a\\b.zip",
        ".upload-x.zip",
        f"{'0' * 64}",  # not a package key
        "",
    ],
)
async def test_keys_outside_the_store_are_not_found(store, tmp_path, key):
    # a file that a traversal would reach, to prove it is not read
    (tmp_path / "secret.zip").write_bytes(b"secret")

    with pytest.raises(NotFound):
        await store.get(key)


async def test_a_new_store_sees_earlier_packages(tmp_path):
    key = await LocalCodeStore(tmp_path / "code").put(sha(DATA), DATA)

    assert await LocalCodeStore(tmp_path / "code").get(key) == DATA
