"""Running the provided relay as a real subprocess, and a stand-in runtime for its Runtime API."""

from __future__ import annotations

import base64
import http.client
import io
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotpool.manager.runtimes import PYTHON_BOOTSTRAP

SECRET = "provided-test-secret-1f3a"
SECRET_HEADER = "X-Hotpool-Container-Secret"
API = "/2018-06-01/runtime"


def provided_zip(
    files: dict[str, str | bytes], executable: tuple[str, ...] = ("bootstrap",)
) -> bytes:
    """A zip of ``files``; those named in ``executable`` carry mode 755, as `zip` keeps it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix: the mode below is read back
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content.encode() if isinstance(content, str) else content)
    return buffer.getvalue()


def init_body(code: bytes | None, handler: str = "function.handler", **overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "function_name": "fn",
        "function_version": 3,
        "handler": handler,
        "memory_mb": 128,
        "timeout_s": 30,
        "env": {"GREETING": "hello"},
    }
    if code is not None:
        body["code_zip_b64"] = base64.b64encode(code).decode()
    return json.dumps(body | overrides).encode()


@dataclass
class Relay:
    """One running relay process."""

    process: subprocess.Popen[bytes]
    port: int
    api: str  # host:port of its Runtime API
    code_dir: Path

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> tuple[int, Any]:
        """One request to hotpool's side, with the secret; (status, decoded JSON)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request(
                method, path, body=body, headers={SECRET_HEADER: SECRET, **(headers or {})}
            )
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=10)
        finally:
            assert self.process.stderr is not None
            self.process.stderr.close()


def start_relay(tmp_path: Path, *flags: str) -> Relay:
    code_dir = tmp_path / "code"
    process = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-S",
            "-u",
            "-B",
            str(PYTHON_BOOTSTRAP),
            "--runtime",
            "provided",
            "--code-dir",
            str(code_dir),
            "--opt-dir",
            str(tmp_path / "opt"),
            *flags,
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"},
    )
    assert process.stdin is not None and process.stderr is not None
    process.stdin.write(SECRET.encode() + b"\n")
    process.stdin.close()
    line = process.stderr.readline().decode()
    assert line.startswith("HOTPOOL_READY port="), line
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    return Relay(process, int(fields["port"]), fields["runtime_api"], code_dir)


class StandIn:
    """The test as a custom runtime: a connection to the Runtime API for each request, so a
    poll may wait on one while the test posts on another."""

    def __init__(self, api: str) -> None:
        self.host, port = api.rsplit(":", 1)
        self.port = int(port)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, API + path, body=body, headers=headers or {})
            response = conn.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            conn.close()

    def next(self) -> tuple[dict[str, str], bytes]:
        status, headers, body = self.request("GET", "/invocation/next")
        assert status == 200, (status, body)
        return headers, body
