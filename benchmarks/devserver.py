"""Run ``hotpool dev`` in a child process for a benchmark, with a throw-away state directory."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DevServer:
    main_url: str
    manager_url: str
    pid: int
    api_key: str
    manager_secret: str

    @property
    def headers(self) -> dict[str, str]:
        """For Main's API: the admin key ``hotpool dev`` created."""
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def manager_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.manager_secret}"}


@contextlib.contextmanager
def dev_server(port: int, **settings: object) -> Iterator[DevServer]:
    """``hotpool dev`` on ``port`` (Manager on port+1) with ``HOTPOOL_<NAME>`` settings."""
    with tempfile.TemporaryDirectory(prefix="hotpool-bench-") as state:
        secret = secrets.token_hex(16)
        env = {**os.environ, "HOTPOOL_STATE_DIR": state, "HOTPOOL_MANAGER_SECRET": secret,
               # one key drives the whole benchmark: its rate limit is not what is measured
               "HOTPOOL_RATE_PER_S": "1000000", "HOTPOOL_RATE_BURST": "1000000"}  # fmt: skip
        env.update({f"HOTPOOL_{k.upper()}": str(v) for k, v in settings.items()})
        proc = subprocess.Popen(
            [sys.executable, "-m", "main_server.cli", "dev", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        main_url = f"http://127.0.0.1:{port}"
        try:
            _wait_up(main_url, proc)
            key = (Path(state) / "admin.key").read_text().strip()
            yield DevServer(main_url, f"http://127.0.0.1:{port + 1}", proc.pid, key, secret)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_up(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hotpool dev exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"hotpool dev did not answer at {url}")


def emit(figures: dict, json_path: str | None) -> int:
    """Print a benchmark's figures as JSON, also to ``json_path`` when given; exit status 0."""
    text = json.dumps(figures, indent=2)
    print(text)
    if json_path:
        Path(json_path).write_text(text)
    return 0
