"""The web trigger's own shapes: one HTTP request as the event formats read it, one HTTP
response as they produce it, and the rules both formats share (which bodies are text, what a
result may hold).

``main_server.web_http_api`` (API Gateway HTTP API / function URL payload 2.0) and
``main_server.web_rest_api`` (REST API proxy payload 1.0) each turn a ``WebRequest`` into an
event and a handler's result into a ``WebResponse``, as Mangum's handlers do for an ASGI app.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from multidict import CIMultiDict

# strftime's %b follows the locale; API Gateway's requestTime is always English
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# media types sent as text; any other body (an image, a form, a zip) travels base64-encoded,
# as function URLs and HTTP APIs do
_TEXT_TYPES = frozenset(
    {
        "application/json", "application/javascript", "application/ecmascript",
        "application/xml", "application/x-javascript", "application/yaml",
        "application/graphql", "application/ld+json",
    }
)  # fmt: skip
# an RFC 9110 token: what a header name may be
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
# the framing of the answer is the server's: a function's own values would corrupt it
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


class MalformedResult(ValueError):
    """The handler's result is not a response of the function's payload format."""


@dataclass(slots=True)
class WebRequest:
    """One HTTP request to a web function, in the terms the event formats use."""

    method: str
    raw_path: str  # the path after /fn/{function}, percent-encoded as sent; "/" at least
    raw_query: str  # without the "?"
    headers: tuple[tuple[str, str], ...]  # as sent: names in their case, repeats kept
    body: bytes
    source_ip: str
    protocol: str  # "HTTP/1.1"
    request_id: str
    domain: str  # the Host header
    api_id: str  # the function's qualified name
    account_id: str  # "anonymous" for public functions, else the caller's key id
    epoch_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.raw_query, keep_blank_values=True)

    def request_time(self) -> str:
        """``12/Mar/2020:19:03:58 +0000``, as API Gateway writes ``time``."""
        return request_time(self.epoch_ms // 1000)

    def body_field(self, content_type: str | None) -> tuple[str | None, bool]:
        """The event's ``body`` and ``isBase64Encoded`` for a body of ``content_type``: text
        bodies as they are, any other base64-encoded; None when there is no body."""
        if not self.body:
            return None, False
        if is_text(content_type):
            try:
                return self.body.decode(), False
            except UnicodeDecodeError:
                pass  # declared text but not UTF-8: it must not be mangled
        return base64.b64encode(self.body).decode(), True


@functools.lru_cache(maxsize=4)
def request_time(epoch_s: int) -> str:
    """``12/Mar/2020:19:03:58 +0000`` of a Unix time, as API Gateway writes it."""
    # a handful of seconds cached: every request of the same second shares its text
    t = time.gmtime(epoch_s)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def is_text(content_type: str | None) -> bool:
    """Whether a body of this Content-Type travels as text (else base64). A body without one
    is text when it is UTF-8, as the function URL documentation's own example shows."""
    if not content_type:
        return True
    media = content_type.partition(";")[0].strip().lower()
    return (
        media.startswith("text/")
        or media in _TEXT_TYPES
        or media.endswith("+json")
        or media.endswith("+xml")
    )


@dataclass
class WebResponse:
    """What the client gets: status, headers (repeats allowed) and body."""

    status: int
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes = b""


def status_of(result: Mapping[str, Any]) -> int:
    raw = result.get("statusCode")
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 100 <= raw <= 599:
        raise MalformedResult(f"statusCode must be an HTTP status, got {str(raw)[:40]!r}")
    return raw


def _header_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str) or "\r" in value or "\n" in value or "\x00" in value:
        raise MalformedResult(f"header {name[:40]!r} has a value that is not one line of text")
    return value


def add_headers(out: CIMultiDict[str], result: Mapping[str, Any]) -> None:
    """The result's ``headers`` and ``multiValueHeaders`` into ``out``: a name in both takes
    its values from ``multiValueHeaders`` only, as API Gateway merges them."""
    single = result.get("headers")
    multi = result.get("multiValueHeaders")
    single = {} if single is None else single
    if multi is None:  # the usual result (2.0 has no multiValueHeaders): nothing to merge
        if not isinstance(single, Mapping):
            raise MalformedResult("headers and multiValueHeaders must be objects")
        for name, value in single.items():
            if _allowed(name):
                out.add(name, _header_value(name, value))
        return
    if not isinstance(single, Mapping) or not isinstance(multi, Mapping):
        raise MalformedResult("headers and multiValueHeaders must be objects")
    multi_names = {str(name).lower() for name in multi}
    for name, value in single.items():
        if _allowed(name) and name.lower() not in multi_names:
            out.add(name, _header_value(name, value))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedResult(f"multiValueHeaders[{str(name)[:40]!r}] must be a list")
        if _allowed(name):
            for value in values:
                out.add(name, _header_value(name, value))


def _allowed(name: Any) -> bool:
    if not isinstance(name, str) or not _TOKEN_RE.match(name):
        raise MalformedResult(f"{str(name)[:40]!r} is not a header name")
    return name.lower() not in _FRAMING


def body_of(result: Mapping[str, Any]) -> bytes:
    """The response body: ``body`` as UTF-8, or decoded from base64 with ``isBase64Encoded``."""
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedResult("body must be a string")
    if result.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedResult("isBase64Encoded is true but body is not base64") from None
    return body.encode()
