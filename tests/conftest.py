"""Fixtures shared by every test package.

Other fixtures are welcome here; keep each one self-contained and cleaning up after itself.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
import redis.asyncio
import redis.exceptions

from tests.services import moto_server

# Database 15 of the local server is reserved for tests: the fixture flushes it.
REAL_REDIS_URL = "redis://127.0.0.1:6379/15"


def _missing_service(reason: str) -> None:
    """Skip locally, but fail in CI: a service CI promised must not silently go missing."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(params=["fake", "real"])
async def redis_client(request: pytest.FixtureRequest) -> AsyncIterator[redis.asyncio.Redis]:
    """A ``redis.asyncio.Redis``-compatible client: fakeredis, or the real server's db 15.

    The real database is flushed before and after the test.
    """
    if request.param == "fake":
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        try:
            yield client
        finally:
            await client.aclose()
        return

    client = redis.asyncio.Redis.from_url(
        REAL_REDIS_URL, socket_connect_timeout=2.0, socket_timeout=10.0
    )
    try:
        try:
            await client.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            _missing_service(f"Redis not reachable at 127.0.0.1:6379: {exc}")
        await client.flushdb()
        yield client
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto standalone S3 server for the whole session (the S3-compatible endpoint)."""
    with moto_server() as url:
        yield url


@pytest.fixture
async def s3_bucket(s3_endpoint: str) -> AsyncIterator[str]:
    """A fresh bucket on the moto server; its name."""
    import uuid

    import aioboto3

    name = f"hotpool-test-{uuid.uuid4().hex[:8]}"
    async with aioboto3.Session().client("s3", endpoint_url=s3_endpoint) as s3:
        await s3.create_bucket(Bucket=name)
    yield name


@pytest.fixture(autouse=True, scope="session")
def _fake_aws_credentials() -> None:
    """moto accepts any credentials; the real client insists there are some."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
