"""Cross-origin rules of web functions, applied as Lambda function URLs apply their ``Cors``:
a preflight is answered without calling the function, and the configured headers are added
to every answer, taking precedence over the function's own ``Access-Control-*`` headers
(https://docs.aws.amazon.com/lambda/latest/dg/urls-configuration.html#urls-cors).
"""

from __future__ import annotations

from multidict import CIMultiDict

from hotpool.shared.cors import Cors

_PREFIX = "access-control-"


def is_preflight(method: str, origin: str | None, requested_method: str | None) -> bool:
    """An OPTIONS request a browser sends before a cross-origin call."""
    return method == "OPTIONS" and origin is not None and requested_method is not None


def _origin_allowed(cors: Cors, origin: str) -> str | None:
    """The Access-Control-Allow-Origin value for ``origin``, or None when it is not allowed."""
    if "*" in cors.allow_origins:
        return "*"
    return origin if origin in cors.allow_origins else None


def preflight(cors: Cors, origin: str, method: str, headers: str | None) -> CIMultiDict[str]:
    """The headers of the answer to a preflight: none when the origin, the method or a header
    is not allowed (the browser then refuses the call)."""
    out: CIMultiDict[str] = CIMultiDict()
    allowed_origin = _origin_allowed(cors, origin)
    if allowed_origin is None or not _method_allowed(cors, method):
        return out
    wanted = [h.strip().lower() for h in (headers or "").split(",") if h.strip()]
    allowed_headers = {h.lower() for h in cors.allow_headers}
    if "*" not in allowed_headers and any(h not in allowed_headers for h in wanted):
        return out
    out["Access-Control-Allow-Origin"] = allowed_origin
    out["Access-Control-Allow-Methods"] = ", ".join(cors.allow_methods)
    if cors.allow_headers:
        out["Access-Control-Allow-Headers"] = ", ".join(cors.allow_headers)
    if cors.max_age_s:
        out["Access-Control-Max-Age"] = str(cors.max_age_s)
    if cors.allow_credentials:
        out["Access-Control-Allow-Credentials"] = "true"
    if allowed_origin != "*":
        out["Vary"] = "Origin"
    return out


def _method_allowed(cors: Cors, method: str) -> bool:
    return any(m == "*" or m.upper() == method.upper() for m in cors.allow_methods)


def apply(cors: Cors, origin: str | None, headers: CIMultiDict[str]) -> None:
    """Put the configured CORS headers of an actual (not preflight) answer into ``headers``,
    replacing the function's own."""
    for name in [n for n in headers if n.lower().startswith(_PREFIX)]:
        headers.popall(name, None)
    if origin is None:
        return
    allowed_origin = _origin_allowed(cors, origin)
    if allowed_origin is None:
        return
    headers["Access-Control-Allow-Origin"] = allowed_origin
    if cors.expose_headers:
        headers["Access-Control-Expose-Headers"] = ", ".join(cors.expose_headers)
    if cors.allow_credentials:
        headers["Access-Control-Allow-Credentials"] = "true"
    if allowed_origin != "*":
        headers.add("Vary", "Origin")
