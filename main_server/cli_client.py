"""The CLI's client side: requests to Main and their answers (``hotpool.main_server.cli``).

Its own module so that every command module shares one ``CliError``, also when the CLI runs
as ``python -m hotpool.main_server.cli`` (which loads that module a second time as __main__).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from hotpool.shared.client_config import client_api_key, client_key_file, client_url


class CliError(Exception):
    """A failure to report in one line, without a traceback."""


def _request(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    content_type: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = _prepare(method, path, body, content_type=content_type, headers=headers)
    with opened(req) as (status, response_headers, resp):
        return status, response_headers, resp.read()


@contextlib.contextmanager
def opened(req: urllib.request.Request) -> Iterator[tuple[int, dict[str, str], Any]]:
    """The answer to ``req`` as (status, headers, a file to read the body from), also for an
    error status; no server is a CliError."""
    try:
        resp = urllib.request.urlopen(req, timeout=960)
    except urllib.error.HTTPError as exc:
        resp = exc
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(
            f"no hotpool server answers at {client_url()} ({reason}); start one with "
            "'hotpool dev' or set HOTPOOL_URL"
        ) from None
    # a failure while the body is read is not "no server": it is raised as it is
    with resp:
        yield resp.code, dict(resp.headers), resp


def _prepare(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    content_type: str = "",
    headers: dict[str, str] | None = None,
) -> urllib.request.Request:
    """A request to Main with the CLI's key."""
    base = client_url()
    if not base.startswith(("http://", "https://")):
        raise CliError(f"HOTPOOL_URL={base!r} must start with http:// or https://")
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    if content_type:
        req.add_header("Content-Type", content_type)
    key = client_api_key()
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    else:
        # the server's 401 would not say where the CLI looked
        raise CliError(
            "no API key: set HOTPOOL_API_KEY, or run the CLI where 'hotpool dev' keeps its "
            f"state (it looked for {client_key_file()})"
        )
    return req


def _check(status: int, body: bytes) -> Any:
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = body.decode(errors="replace")
    if status >= 400:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        message = error.get("message", data) if isinstance(error, dict) else error
        raise CliError(f"error {status}: {message}")
    return data


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def multipart(fields: dict[str, str], code: bytes | None) -> tuple[bytes, str]:
    """A multipart/form-data body of ``fields`` and the ``code`` zip (none for an image)."""
    boundary = "hotpool-" + secrets.token_hex(16)
    parts = []
    for key, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    if code is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="code"; filename="code.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n".encode()
            + code
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
