"""``CodeStore`` on S3 (or any S3-compatible server: MinIO, moto) through aioboto3.

Keys are content addressed (``<prefix><sha256>.zip``): storing identical code twice uploads
nothing, and a key never changes content, so any cache of it never goes stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import aioboto3
import botocore.exceptions
from botocore.config import Config

from hotpool.shared.codestore import package_key
from hotpool.shared.errors import NotFound, StoreUnavailable

log = logging.getLogger(__name__)

# a missing object: GetObject says NoSuchKey; HeadObject has no body, so its code is the status
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_UNREACHABLE = (
    # EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError, SSLError
    botocore.exceptions.ConnectionError,
    # ReadTimeoutError, ConnectionClosedError (aiobotocore's name for a dropped connection)
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.NoCredentialsError,
    OSError,
)


@contextlib.contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Translate an S3 failure about the object ``what`` into hotpool's errors: a missing
    object is ``NotFound``; a refusal (AccessDenied, NoSuchBucket, ...) or an unreachable
    server is ``StoreUnavailable``."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _MISSING_CODES:
            raise NotFound(f"no code package {what!r}") from exc
        raise StoreUnavailable(f"S3 refused {what!r}: {code or exc}") from exc
    except _UNREACHABLE as exc:
        raise StoreUnavailable(f"S3 is unreachable: {exc}") from exc


class S3CodeStore:
    """Code packages in one S3 bucket under a prefix."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "packages/",
        endpoint_url: str | None = None,
        region: str | None = None,
        session: aioboto3.Session | None = None,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._endpoint_url = endpoint_url
        self._region = region
        self._session = session or aioboto3.Session()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        # botocore reads its JSON models (S3's are megabytes) synchronously when a client is
        # made: read them in a thread first, so the client comes from its cache (0.33 s of
        # the loop down to 0.06 s here)
        await asyncio.to_thread(_load_s3_models, self._session)
        config = Config(
            connect_timeout=3, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
        )
        self._client = await self._stack.enter_async_context(
            self._session.client(
                "s3", endpoint_url=self._endpoint_url, region_name=self._region, config=config
            )
        )

    async def check(self) -> None:
        """Raise StoreUnavailable unless the bucket answers (start-up check)."""
        try:
            with s3_errors(self._bucket):
                await self._client.head_bucket(Bucket=self._bucket)
        except (NotFound, StoreUnavailable) as exc:
            raise StoreUnavailable(
                f"the code bucket is not usable (HOTPOOL_S3_BUCKET={self._bucket!r}, "
                f"HOTPOOL_S3_ENDPOINT_URL={self._endpoint_url or 'AWS'}): {exc.message}"
            ) from exc

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def put(self, sha256: str, data: bytes) -> str:
        key = package_key(sha256)
        if await self.exists(key):
            return key  # content addressed: already there means identical
        with s3_errors(key):
            await self._client.put_object(
                Bucket=self._bucket,
                Key=self._key(key),
                Body=data,
                ContentType="application/zip",
                Metadata={"sha256": sha256},
            )
        return key

    async def get(self, key: str) -> bytes:
        with s3_errors(key):
            response = await self._client.get_object(Bucket=self._bucket, Key=self._key(key))
            async with response["Body"] as body:
                return await body.read()

    async def delete(self, key: str) -> None:
        with s3_errors(key):  # S3 answers a missing key with success too
            await self._client.delete_object(Bucket=self._bucket, Key=self._key(key))

    async def exists(self, key: str) -> bool:
        try:
            with s3_errors(key):
                await self._client.head_object(Bucket=self._bucket, Key=self._key(key))
        except NotFound:
            return False
        return True

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def _load_s3_models(session: aioboto3.Session) -> None:
    """Fill botocore's loader cache with what creating an S3 client reads."""
    loader = session._session.get_component("data_loader")
    for type_name in ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2"):
        with contextlib.suppress(botocore.exceptions.DataNotFoundError):
            loader.load_service_model("s3", type_name)
    for name in ("endpoints", "partitions", "sdk-default-configuration", "_retry"):
        with contextlib.suppress(botocore.exceptions.DataNotFoundError):
            loader.load_data(name)
