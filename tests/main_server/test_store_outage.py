"""Stores going away mid-run, and more than one Main replica sharing the pool."""

from __future__ import annotations

import fakeredis
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import make_url

from hotpool.main_server.app import create_app
from hotpool.shared.schema import migrate
from tests.helpers import handler_zip
from tests.services import TcpProxy
from tests.stack import wait_for

pytestmark = pytest.mark.integration


async def test_mysql_away_keeps_cached_functions_running(hotpool_stack, mariadb_url):
    await migrate(mariadb_url)
    url = make_url(mariadb_url)
    proxy = TcpProxy(url.port or 3306)
    await proxy.start()
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    stack = await hotpool_stack(database_url=through_proxy, function_cache_ttl_s=0.1)
    try:
        assert (await stack.deploy("kept", handler_zip("return 'still here'"))).status == 201
        assert (await stack.invoke("kept", {})).status == 200

        await proxy.cut()
        # the cache entry has expired; the lookup fails, the last known version serves
        for _ in range(3):
            resp = await stack.invoke("kept", {})
            assert resp.status == 200 and await resp.json() == "still here"
        # what needs the database answers 503 with a message, quickly
        deploy = await stack.deploy("new", handler_zip("return 1"))
        assert deploy.status == 503
        assert "unreachable" in (await deploy.json())["error"]["message"]
        assert (await stack.client.get("/v1/functions")).status == 503
        assert (await stack.invoke("never-cached", {})).status == 503

        await proxy.restore()

        async def deploys() -> bool:
            return (await stack.deploy("new", handler_zip("return 1"))).status == 201

        assert await wait_for(deploys, timeout_s=20)
        assert (await stack.invoke("new", {})).status == 200
    finally:
        await proxy.cut()


async def test_an_update_reaches_every_main_replica(hotpool_stack):
    stack = await hotpool_stack(function_cache_ttl_s=3600)
    other = TestClient(
        TestServer(
            create_app(stack.settings, redis=fakeredis.FakeAsyncRedis(server=stack.fake_server))
        )
    )
    await other.start_server()
    other.session.headers["Authorization"] = stack.client.session.headers["Authorization"]
    try:
        await stack.deploy("shared", handler_zip("return 'v1'"))
        resp = await other.post("/v1/functions/shared/invoke", json={})
        assert await resp.json() == "v1"  # the replica has v1 cached for an hour now
        await stack.deploy("shared", handler_zip("return 'v2'"))

        async def sees_v2() -> bool:
            resp = await other.post("/v1/functions/shared/invoke", json={})
            return await resp.json() == "v2"

        assert await wait_for(sees_v2, timeout_s=5)
        # and a delete on one replica is a 404 on the other
        await stack.client.delete("/v1/functions/shared")

        async def gone() -> bool:
            resp = await other.post("/v1/functions/shared/invoke", json={})
            return resp.status == 404

        assert await wait_for(gone, timeout_s=5)
    finally:
        await other.close()
