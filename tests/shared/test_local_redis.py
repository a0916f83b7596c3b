"""The private redis-server of ``hotpool dev``: started on a unix socket, private, gone with
its parent, and chosen only when the settings leave Redis to the embedded default."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from hotpool.shared.local_redis import LocalRedis, wanted_binary
from hotpool.shared.settings import Settings, SettingsError
from tests.services import missing_service

BINARY = shutil.which("redis-server")


@pytest.fixture
def binary() -> str:
    if BINARY is None:
        missing_service("redis-server is not installed (apt-get install redis-server)")
    return BINARY


@pytest.mark.integration
def test_it_serves_on_a_private_unix_socket_and_stops(tmp_path, binary):
    server = LocalRedis(binary, tmp_path / "redis")
    url = server.start()
    try:
        assert url.startswith("unix://")
        socket_path = Path(url.removeprefix("unix://"))
        assert stat.S_IMODE((tmp_path / "redis").stat().st_mode) == 0o700
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o700
        client = redis.Redis.from_url(url)
        assert client.set("k", "v") and client.get("k") == b"v"
        # nothing is kept on disk, and no TCP port is open
        assert client.config_get("save")["save"] == ""
        assert client.config_get("port")["port"] == "0"
        client.close()
    finally:
        server.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(url).ping()


@pytest.mark.integration
def test_a_deep_state_directory_gets_a_short_socket_path(tmp_path, binary):
    deep = tmp_path.joinpath(*["d" * 20] * 6)
    server = LocalRedis(binary, deep)
    url = server.start()
    try:
        assert len(url.removeprefix("unix://")) <= 100
        assert redis.Redis.from_url(url).ping()
    finally:
        server.stop()
    assert not Path(url.removeprefix("unix://")).parent.exists()  # its own dir is removed


@pytest.mark.integration
def test_it_dies_with_a_parent_killed_by_sigkill(tmp_path, binary):
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from hotpool.shared.local_redis import LocalRedis
        server = LocalRedis({binary!r}, Path({str(tmp_path / "redis")!r}))
        print(server.start(), flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    url = parent.stdout.readline().strip()
    client = redis.Redis.from_url(url)
    assert client.ping()
    pid = client.info("server")["process_id"]

    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "redis-server outlived its parent"


@pytest.mark.unit
def test_which_redis_the_settings_ask_for(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/redis-server")
    assert wanted_binary(Settings()) == "/usr/bin/redis-server"
    assert wanted_binary(Settings(embedded_redis="inprocess")) is None
    # a configured Redis is used as it is
    assert wanted_binary(Settings(redis_url="redis://127.0.0.1:6379/0")) is None
    assert wanted_binary(Settings(redis_sentinels="127.0.0.1:26379")) is None

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert wanted_binary(Settings()) is None  # auto falls back to the in-process stand-in
    with pytest.raises(SettingsError, match="HOTPOOL_EMBEDDED_REDIS=server"):
        wanted_binary(Settings(embedded_redis="server"))
    with pytest.raises(SettingsError, match="HOTPOOL_EMBEDDED_REDIS"):
        Settings(embedded_redis="sometimes")
