"""Listening on a port the system chooses (``--port 0``) and announcing it in the ready line."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from hotpool.main_server.serve import Address, announced_urls, metrics_note, metrics_site
from hotpool.shared.metrics import Exporter
from hotpool.shared.settings import Settings

pytestmark = pytest.mark.unit

DEV_OUTPUT = """\
2026-11-30 09:43:57,507 INFO hotpool.manager.app manager vm-40423 up at http://127.0.0.1:40423
hotpool dev: Main on http://127.0.0.1:36773, Manager on http://127.0.0.1:40423 (state in \
/tmp/s/, Redis: in-process); Ctrl-C stops it
"""


def test_the_ready_lines_announce_each_services_url():
    assert announced_urls(DEV_OUTPUT) == {
        "main": "http://127.0.0.1:36773",
        "manager": "http://127.0.0.1:40423",
    }
    assert announced_urls("hotpool main on http://0.0.0.0:8080\n") == {
        "main": "http://0.0.0.0:8080"
    }
    assert announced_urls("x\nhotpool manager on http://10.0.0.2:9001\n") == {
        "manager": "http://10.0.0.2:9001"
    }


def test_the_metrics_ports_are_mentioned_without_being_taken_for_a_service():
    line = DEV_OUTPUT.replace("; Ctrl-C", metrics_note(_sites(Settings())) + "; Ctrl-C")
    assert "metrics: http://127.0.0.1:9464/metrics, http://127.0.0.1:9465/metrics" in line
    assert announced_urls(line) == announced_urls(DEV_OUTPUT)


def _sites(settings: Settings) -> list:
    exporter = Exporter(CollectorRegistry(), refresh=_nothing)
    return [
        *metrics_site(exporter, settings.host, settings.metrics_port, settings),
        *metrics_site(exporter, settings.manager_host, settings.manager_metrics_port, settings),
    ]


async def _nothing() -> None:
    pass


def test_a_metrics_port_of_0_is_off_and_metrics_host_overrides_the_services_host():
    assert _sites(Settings(metrics_port=0, manager_metrics_port=0)) == []
    (only,) = _sites(Settings(metrics_port=0, manager_metrics_port=9999))
    assert only[1] == Address("127.0.0.1", 9999)
    addresses = [a for _, a in _sites(Settings(host="0.0.0.0", metrics_host="10.0.0.5"))]
    assert addresses == [Address("10.0.0.5", 9464), Address("10.0.0.5", 9465)]


def test_nothing_is_announced_before_the_ready_line():
    assert announced_urls(DEV_OUTPUT.splitlines()[0]) == {}


def test_port_0_is_claimed_at_once_and_held():
    address = Address.claim("127.0.0.1", 0)
    try:
        assert address.port > 0 and address.url == f"http://127.0.0.1:{address.port}"
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", address.port))
    finally:
        assert address.sock is not None
        address.sock.close()


def test_a_fixed_port_is_left_to_the_server_to_bind():
    assert Address.claim("127.0.0.1", 8080) == Address("127.0.0.1", 8080)


async def test_an_app_is_served_on_the_claimed_port():
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    address = Address.claim("127.0.0.1", 0)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await address.site(runner, Settings()).start()
        async with aiohttp.ClientSession() as http, http.get(address.url + "/") as resp:
            assert await resp.text() == "hello"
    finally:
        await runner.cleanup()
        assert address.sock is not None
        address.sock.close()
