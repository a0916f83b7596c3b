"""A production-shaped run: ``hotpool main`` and ``hotpool manager`` as two processes configured
only by environment, against MariaDB, Redis and an S3-compatible server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from hotpool.benchmarks.devserver import wait_announced
from tests.helpers import handler_zip
from tests.services import REDIS_PORT

pytestmark = pytest.mark.integration

REDIS_DB_URL = f"redis://127.0.0.1:{REDIS_PORT}/14"


def _start(command: str, env: dict[str, str], log_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hotpool.main_server.cli", command],
        env=env,
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
async def flushed_redis():
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_DB_URL)
    try:
        await client.flushdb()
    except OSError as exc:
        pytest.fail(f"Redis at {REDIS_DB_URL} unreachable: {exc}")
    yield client
    await client.flushdb()
    await client.aclose()


async def test_main_and_manager_as_separate_processes(
    tmp_path, mariadb_url, s3_endpoint, s3_bucket, flushed_redis
):
    env = {
        **os.environ,
        "HOTPOOL_REDIS_URL": REDIS_DB_URL,
        "HOTPOOL_DATABASE_URL": mariadb_url,
        "HOTPOOL_S3_BUCKET": s3_bucket,
        "HOTPOOL_S3_ENDPOINT_URL": s3_endpoint,
        "HOTPOOL_PORT": "0",  # each picks a free port and announces it
        "HOTPOOL_MANAGER_PORT": "0",
        # /metrics off: other tests' services may hold the default metrics ports
        "HOTPOOL_METRICS_PORT": "0",
        "HOTPOOL_MANAGER_METRICS_PORT": "0",
        "HOTPOOL_MANAGER_ID": "prod-test-manager",
        "HOTPOOL_PREWARM_COUNT": "1",
        "HOTPOOL_MANAGER_SECRET": "prod-test-secret",
    }
    migrate = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hotpool.main_server.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    # production takes its first key from the database, not from an API call
    created = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hotpool.main_server.cli", "admin", "create-key", "--namespace", "*",
         "--scopes", "admin"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    admin_key = created.stdout.strip().splitlines()[-1]
    assert admin_key.startswith("hp_")
    manager = _start(
        "manager", {**env, "HOTPOOL_STATE_DIR": str(tmp_path / "m")}, tmp_path / "m.log"
    )
    main = _start("main", {**env, "HOTPOOL_STATE_DIR": str(tmp_path / "a")}, tmp_path / "a.log")
    try:

        def running() -> bool:
            return main.poll() is None and manager.poll() is None

        await asyncio.to_thread(wait_announced, tmp_path / "m.log", ("manager",), running, 30)
        urls = await asyncio.to_thread(wait_announced, tmp_path / "a.log", ("main",), running, 30)
        base = urls["main"]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin_key}"}) as http:
            await _wait_manager_online(http, base)
            v1 = handler_zip("return {'v': 1, 'echo': event}")
            async with http.put(f"{base}/v1/functions/prod", data=v1,
                                headers={"Content-Type": "application/zip"}) as resp:  # fmt: skip
                assert resp.status == 201, await resp.text()
                sha = (await resp.json())["code_sha256"]
            # the package went to S3, content addressed
            import aioboto3

            async with aioboto3.Session().client("s3", endpoint_url=s3_endpoint) as s3:
                listed = await s3.list_objects_v2(Bucket=s3_bucket)
            assert [o["Key"] for o in listed["Contents"]] == [f"packages/{sha}.zip"]

            cold = await _invoke(http, base, {"n": 1})
            warm = await _invoke(http, base, {"n": 2})
            assert cold[0] == {"v": 1, "echo": {"n": 1}} and cold[1] == "true"
            assert warm[0] == {"v": 1, "echo": {"n": 2}} and warm[1] == "false"

            v2 = handler_zip("return {'v': 2}")
            async with http.put(f"{base}/v1/functions/prod", data=v2,
                                headers={"Content-Type": "application/zip"}) as resp:  # fmt: skip
                assert (await resp.json())["version"] == 2
            assert (await _invoke(http, base, {}))[0] == {"v": 2}

            records = await _records(http, base, 3)
            assert [r["version"] for r in records] == [2, 1, 1]
            assert [r["cold_start"] for r in records] == [True, False, True]
    finally:
        for proc in (main, manager):
            proc.send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(proc.wait, 60) for proc in (main, manager)]
    assert codes == [0, 0], (tmp_path / "m.log").read_text()[-3000:]
    # the Manager drained: no container of it is left in Redis
    assert await flushed_redis.hlen("hp:containers:prod-test-manager") == 0
    assert await flushed_redis.hexists("hp:managers", "prod-test-manager") == 0


async def _wait_manager_online(http, base):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with http.get(f"{base}/system/status") as resp:
            if resp.status == 200 and (await resp.json())["managers_online"] == 1:
                return
        await asyncio.sleep(0.2)
    raise AssertionError("the Manager never registered")


async def _invoke(http, base, event):
    async with http.post(f"{base}/v1/functions/prod/invoke", json=event) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json(), resp.headers["X-Hotpool-Cold-Start"]


async def _records(http, base, n):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with http.get(f"{base}/v1/functions/prod/invocations?limit=10") as resp:
            records = (await resp.json())["invocations"]
        if len(records) >= n:
            return records
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {n} records, got {records}")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HOTPOOL_DATABASE_URL", "mysql+asyncmy://root@127.0.0.1:1/nothing"),
        ("HOTPOOL_DATABASE_URL", "not a url"),
        ("HOTPOOL_REDIS_URL", "redis://127.0.0.1:1/0"),
        ("HOTPOOL_REDIS_URL", "http://wrong-scheme"),
        ("HOTPOOL_PORT", "eighty"),
        ("HOTPOOL_MANAGER_SECRET", ""),
    ],
)
def test_bad_configuration_is_one_line_naming_the_setting(tmp_path, variable, value):
    env = {**os.environ, "HOTPOOL_STATE_DIR": str(tmp_path), "HOTPOOL_PORT": "0",
           "HOTPOOL_MANAGER_SECRET": "s", variable: value}  # fmt: skip
    if variable != "HOTPOOL_REDIS_URL":
        env["HOTPOOL_REDIS_URL"] = REDIS_DB_URL
    result = subprocess.run(
        [sys.executable, "-m", "hotpool.main_server.cli", "main"], env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("hotpool:")]
    assert len(errors) == 1, result.stderr
    assert variable in errors[0]
    assert "Traceback" not in result.stderr
