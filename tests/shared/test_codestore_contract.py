"""One contract for every CodeStore: the local directory and S3 (a moto server)."""

from __future__ import annotations

import hashlib
import os

import pytest

from hotpool.shared.codestore import LocalCodeStore
from hotpool.shared.errors import NotFound, StoreUnavailable
from hotpool.shared.s3_codestore import S3CodeStore


@pytest.fixture(params=["local", "s3"])
async def store(request, tmp_path, s3_endpoint, s3_bucket):
    if request.param == "local":
        yield LocalCodeStore(tmp_path / "code")
        return
    s3 = S3CodeStore(s3_bucket, prefix="pkgs/", endpoint_url=s3_endpoint)
    await s3.open()
    yield s3
    await s3.close()


def _package(content: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(content).hexdigest(), content


@pytest.mark.contract
async def test_put_then_get(store):
    sha, data = _package(os.urandom(2048))
    key = await store.put(sha, data)
    assert key == f"{sha}.zip"
    assert await store.get(key) == data


@pytest.mark.contract
async def test_put_is_idempotent(store):
    sha, data = _package(b"same code")
    assert await store.put(sha, data) == await store.put(sha, data)
    assert await store.get(f"{sha}.zip") == data


@pytest.mark.contract
async def test_a_deleted_package_is_gone_and_deleting_it_again_is_fine(store):
    sha, data = _package(b"old code")
    key = await store.put(sha, data)
    await store.delete(key)
    with pytest.raises(NotFound):
        await store.get(key)
    await store.delete(key)
    assert await store.put(sha, data) == key  # and it can come back
    assert await store.get(key) == data


@pytest.mark.contract
async def test_unknown_key_is_not_found(store):
    with pytest.raises(NotFound):
        await store.get(f"{'0' * 64}.zip")


@pytest.mark.integration
async def test_identical_code_uploads_nothing_twice(s3_endpoint, s3_bucket):
    s3 = S3CodeStore(s3_bucket, endpoint_url=s3_endpoint)
    await s3.open()
    calls = []
    original = s3._client.put_object

    async def counting_put(**kwargs):
        calls.append(kwargs["Key"])
        return await original(**kwargs)

    s3._client.put_object = counting_put
    try:
        sha, data = _package(b"deploy me twice")
        await s3.put(sha, data)
        await s3.put(sha, data)
        assert calls == [f"packages/{sha}.zip"]
        await s3.check()
    finally:
        await s3.close()


@pytest.mark.integration
async def test_missing_bucket_and_unreachable_server(s3_endpoint):
    missing = S3CodeStore("no-such-bucket-here", endpoint_url=s3_endpoint)
    await missing.open()
    try:
        with pytest.raises(StoreUnavailable, match="HOTPOOL_S3_BUCKET"):
            await missing.check()
    finally:
        await missing.close()
    down = S3CodeStore("b", endpoint_url="http://127.0.0.1:1")
    await down.open()
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await down.get(f"{'0' * 64}.zip")
    finally:
        await down.close()
