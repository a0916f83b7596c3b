"""The private redis-server of ``hotpool dev``: started on a unix socket, private, gone with
its parent, its data kept on disk across restarts (the last run's keys dropped but the
asynchronous ones), and chosen only when the settings leave Redis to the embedded default."""

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

from hotpool.shared import async_keys, schedule_keys
from hotpool.shared.local_redis import LocalRedis, unlink_all_but, wanted_binary
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
        # kept on disk in an append-only file (no snapshots), and no TCP port is open
        assert client.config_get("appendonly")["appendonly"] == "yes"
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


@pytest.fixture
def local_redis(binary):
    """Start LocalRedis servers; every one still running is stopped at the end."""
    started: list[LocalRedis] = []

    def start(directory: Path) -> tuple[LocalRedis, redis.Redis]:
        server = LocalRedis(binary, directory)
        started.append(server)
        client = redis.Redis.from_url(server.start())
        return server, client

    yield start
    for server in started:
        server.stop()


@pytest.mark.integration
def test_its_data_survives_a_stop_and_a_start_on_the_same_directory(tmp_path, local_redis):
    server, client = local_redis(tmp_path / "redis")
    client.xadd(async_keys.stream("default"), {"id": "r1"})
    client.set("plain", "v")
    client.close()
    server.stop()

    _, again = local_redis(tmp_path / "redis")
    assert again.xrange(async_keys.stream("default"))[0][1] == {b"id": b"r1"}
    assert again.get("plain") == b"v"
    again.close()


@pytest.mark.integration
def test_a_killed_server_with_a_cut_short_file_starts_again_with_its_data(tmp_path, local_redis):
    directory = tmp_path / "redis"
    _, client = local_redis(directory)
    for n in range(100):
        client.set(f"k{n}", n)
    pid = client.info("server")["process_id"]
    client.close()
    # as when hotpool dev is killed: redis-server gets SIGKILL too (die_with_parent), its
    # socket file stays, and a write it was making may be cut short
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (directory / "redis.sock").exists()
    (increment,) = (directory / "appendonlydir").glob("*.incr.aof")
    with increment.open("ab") as f:
        f.write(b"*3\r\n$3\r\nSET\r\n$4\r\nlost")

    _, again = local_redis(directory)
    assert again.mget([f"k{n}" for n in range(100)]) == [str(n).encode() for n in range(100)]
    assert again.get("lost") is None
    again.close()
    log = (directory / "redis.log").read_text()
    assert "loaded anyway because aof-load-truncated is enabled" in log


@pytest.mark.integration
def test_the_last_runs_keys_are_dropped_but_the_asynchronous_ones(tmp_path, local_redis):
    server, client = local_redis(tmp_path / "redis")
    kept = {f"{async_keys.PREFIX}inv:{n}".encode() for n in range(150)}
    stale = {f"hp:pool:f:{n}".encode() for n in range(230)} | {b"hp:leases", b"hp:managers"}
    # a key that only resembles the prefix is not kept
    stale.add(async_keys.PREFIX.rstrip(":").encode() + b"-other")
    with client.pipeline(transaction=False) as pipe:
        for key in kept | stale:
            pipe.set(key, "1")
        pipe.execute()
    client.xadd(async_keys.stream("default"), {"id": "r1"})
    kept.add(async_keys.stream("default").encode())

    # small batches: the keys span several SCAN rounds and UNLINKs
    assert unlink_all_but(client, (async_keys.PREFIX,), batch=50) == len(stale)
    assert set(client.scan_iter(count=1000)) == kept
    assert server.drop_stale_keys() == 0  # nothing left to drop
    client.close()


@pytest.mark.integration
def test_the_schedulers_progress_is_kept_but_its_lease(tmp_path, local_redis):
    """A restart of hotpool dev keeps each schedule's last tick, counts and claims, the epoch
    and the fencing counter, so the ticks of the downtime are caught up or counted missed and
    none fires twice; the lease named the last run's process, which is gone."""
    server, client = local_redis(tmp_path / "redis")
    kept = {
        schedule_keys.state("s1").encode(),
        schedule_keys.fire("s1", 1000).encode(),
        schedule_keys.EPOCH.encode(),
        schedule_keys.FENCE.encode(),
    }
    stale = {schedule_keys.LEADER.encode(), b"hp:schedx"}
    for key in kept | stale:
        client.set(key, "1")

    assert server.drop_stale_keys() == len(stale)
    assert set(client.scan_iter(count=1000)) == kept
    client.close()


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
