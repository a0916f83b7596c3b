"""Fixtures shared by every test package.

Other fixtures are welcome here; keep each one self-contained and cleaning up after itself.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
import redis.asyncio
import redis.exceptions
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from hotpool.shared.metadata import describe_db_error
from tests.loop_guard import (  # noqa: F401 (fixtures and hooks, found here by pytest)
    _event_loop_guard,
    _loop_watchdog,
    pytest_addoption,
    pytest_runtest_call,
)
from tests.services import REDIS_PORT, missing_service, moto_server

TIERS = ("unit", "contract", "integration")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test has exactly one tier marker (pyproject.toml says what each means), so that
    ``pytest -m unit`` is the fast tier and a new module cannot forget to say which it is."""
    wrong = []
    for item in items:
        tiers = [m.name for m in item.iter_markers() if m.name in TIERS]
        if len(tiers) != 1:
            wrong.append(f"  {item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            "every test needs exactly one tier marker: pytestmark = pytest.mark.unit, "
            "contract or integration (see [tool.pytest.ini_options] markers):\n" + "\n".join(wrong)
        )


# Database 15 of the local server is reserved for tests: the fixture flushes it.
REAL_REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/15"


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
            missing_service(f"Redis not reachable at 127.0.0.1:{REDIS_PORT}: {exc}")
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


# the local server's root account; each test gets its own hotpool_t_* database, dropped after
MARIADB_SERVER_URL = "mysql+asyncmy://root@127.0.0.1:3306/"
TEST_DATABASE_PREFIX = "hotpool_t_"


@pytest.fixture
async def mariadb_url() -> AsyncIterator[str]:
    """The URL of a new, empty MariaDB database (utf8mb4), dropped after the test."""
    name = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex[:8]}"
    server = create_async_engine(MARIADB_SERVER_URL, poolclass=NullPool)
    try:
        try:
            async with server.connect() as conn:
                await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        except (DBAPIError, OSError) as exc:
            missing_service(f"MariaDB not reachable at 127.0.0.1:3306: {describe_db_error(exc)}")
        try:
            yield f"{MARIADB_SERVER_URL}{name}"
        finally:
            async with server.connect() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        await server.dispose()


@pytest.fixture(params=["sqlite", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The URL of a new, empty database on each backend: SQLite (embedded) and MariaDB."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'hotpool.db'}"
    # a sync fixture, so that it may ask for the async mariadb_url
    return request.getfixturevalue("mariadb_url")
