"""A private redis-server for ``hotpool dev``, when one is installed.

The embedded default needs no Redis: its in-process stand-in (fakeredis) runs the pool's Lua
scripts unchanged. But it interprets every ``redis.call`` of a script through Python, and a
profile of the invoke path put the two scripts of a warm call at ~0.5 ms there against
~0.15 ms on a real server. So ``hotpool dev`` starts a redis-server of its own when the binary
is on the PATH (``HOTPOOL_EMBEDDED_REDIS=auto``, the default): a child process that listens
only on a unix socket in a private directory (mode 0700) and dies with its parent.
``inprocess`` always uses the stand-in; ``server`` requires the binary.

The server keeps its data in an append-only file in that directory (``appendonlydir/``,
fsynced every second), so the asynchronous events a run of ``hotpool dev`` accepted are still
queued, and each schedule's progress is still known, when the next run starts on the same state
folder; ``drop_stale_keys`` then removes what described the last run's containers, Managers and
processes. The stand-in keeps nothing.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redis.exceptions

from hotpool.shared import async_keys, schedule_keys
from hotpool.shared.procs import die_with_parent
from hotpool.shared.settings import Settings, SettingsError

log = logging.getLogger(__name__)

start_timeout_s = 10.0
# sun_path holds 108 bytes on Linux; a deep state directory gets a short private one instead
max_socket_path = 100
# keys per SCAN round, and the most one UNLINK names
drop_batch = 1000
# what outlives a run: the asynchronous queue, and the scheduler's progress (each schedule's
# last tick and counts, the tick claims, the epoch, the fencing counter), so the ticks a stopped
# hotpool dev did not fire are caught up or counted missed at its next start, never fired twice
kept_across_runs = (async_keys.PREFIX, schedule_keys.PREFIX)
# ...but for the scheduler's lease, which names the last run's process
dropped_anyway = (schedule_keys.LEADER,)


def wanted_binary(settings: Settings) -> str | None:
    """The redis-server to start for ``settings``, or None for the in-process stand-in."""
    if settings.redis_url or settings.redis_sentinels or settings.embedded_redis == "inprocess":
        return None
    binary = shutil.which("redis-server")
    if binary is None and settings.embedded_redis == "server":
        raise SettingsError(
            "HOTPOOL_EMBEDDED_REDIS=server but no redis-server is on the PATH "
            "(apt-get install redis-server, or use auto / inprocess)"
        )
    return binary


class LocalRedis:
    """One redis-server child on a unix socket; ``url`` is set once it answers.

    Synchronous (``hotpool dev`` calls it through a thread at start and stop), so benchmarks
    and tests can run one too.
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self._binary = binary
        self._dir = directory.absolute()
        self._proc: subprocess.Popen[bytes] | None = None
        self._own_dir: str | None = None
        self.url = ""

    def start(self) -> str:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._dir.chmod(0o700)
        socket_dir = self._dir
        if len(str(socket_dir / "redis.sock")) > max_socket_path:
            self._own_dir = tempfile.mkdtemp(prefix="hotpool-redis-")  # mode 0700
            socket_dir = Path(self._own_dir)
        socket_path = socket_dir / "redis.sock"
        socket_path.unlink(missing_ok=True)  # left by a process that was killed
        self._proc = subprocess.Popen(
            [
                self._binary,
                "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
                # no snapshots: the append-only file alone; a tail cut short by a kill is
                # dropped at load (aof-load-truncated, on by default), not refused
                "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                "--dir", str(self._dir),
                "--logfile", str(self._dir / "redis.log"), "--daemonize", "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        self.url = f"unix://{socket_path}"
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("embedded Redis: redis-server (pid %d) on %s", self._proc.pid, socket_path)
        return self.url

    def drop_stale_keys(self) -> int:
        """Delete the keys the last run on this directory left, all but those of asynchronous
        invocation and of the scheduler's progress (``kept_across_runs``), and return how
        many. For ``hotpool dev``'s start, before Main and Manager: the last run's pool
        entries, leases and registrations name containers, a Manager and a scheduler leader
        that died with it."""
        client = redis.Redis.from_url(self.url)
        try:
            dropped = unlink_all_but(client, kept_across_runs)
            dropped += client.unlink(*dropped_anyway)
            kept = client.dbsize()
        finally:
            client.close()
        log.info(
            "embedded Redis: dropped %d keys of the last run, kept %d of asynchronous "
            "invocation and schedules (%s)", dropped, kept,
            ", ".join(f"{prefix}*" for prefix in kept_across_runs),
        )  # fmt: skip
        return dropped

    def _wait_ready(self) -> None:
        assert self._proc is not None
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + start_timeout_s
        try:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with code {self._proc.returncode}; "
                        f"see {self._dir / 'redis.log'}"
                    )
                with contextlib.suppress(redis.exceptions.ConnectionError, OSError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer within {start_timeout_s} s")
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)


def unlink_all_but(client: redis.Redis, prefixes: tuple[str, ...], batch: int = drop_batch) -> int:
    """Delete every key of ``client``'s database that starts with none of ``prefixes``; return
    how many were deleted.

    SCAN, not KEYS: it never blocks the server for the whole keyspace. A key SCAN returns
    twice (it may, as the table resizes) counts once: UNLINK counts only keys it removed.
    """
    keep = tuple(prefix.encode() for prefix in prefixes)
    dropped = 0
    stale: list[bytes] = []
    for key in client.scan_iter(count=batch):
        if not key.startswith(keep):
            stale.append(key)
        if len(stale) >= batch:
            dropped += client.unlink(*stale)
            stale.clear()
    if stale:
        dropped += client.unlink(*stale)
    return dropped
