"""Who may reach a function through a trigger of its own address (``/fn/`` for the web,
``/ws/`` for WebSockets), and what the call passes in the pool's first script.

A function's setting for the trigger (``http`` or ``websocket``) says who may call:

- ``key``: a Bearer key with ``invoke`` on the function's namespace, metered as /invoke
  meters it; the key itself is never handed to the function.
- ``public``: anyone, under the function's own rate (HOTPOOL_PUBLIC_RATE_PER_S / _BURST) in
  the same Redis script as the acquire.
- ``off``: 404.

An unknown function, another tenant's and one with the trigger off are the same 404 to a key,
and the same 401 without one, so nothing tells them apart. A caller without a verified key
whose request made Main read the database counts as a failed authentication of its address,
so guessing names is throttled as guessing keys is.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from hotpool.main_server.auth import AUTHENTICATOR, Authenticator
from hotpool.main_server.functions import FunctionService
from hotpool.main_server.state import FUNCTIONS, SETTINGS
from hotpool.shared.auth import Principal, parse_token
from hotpool.shared.errors import HotpoolError, NotFound, Unauthorized
from hotpool.shared.keystore import INVALID_KEY
from hotpool.shared.models import FunctionVersion, qualify, split_qualified, validate_qualified
from hotpool.shared.pool import Admission
from hotpool.shared.settings import Settings

PUBLIC_ACCOUNT = "anonymous"  # requestContext.accountId of a public call, as function URLs


@dataclass(frozen=True, slots=True)
class Trigger:
    """What differs between the triggers that share this access check."""

    setting: str  # the FunctionConfig field that says who may call: "http" or "websocket"
    what: str  # the thing a 404 names: "web function"
    # the query parameter that may carry the key (browsers cannot set a WebSocket's headers)
    token_param: str | None = None


WEB = Trigger("http", "web function")
WEBSOCKET = Trigger("websocket", "WebSocket function", token_param="token")


@dataclass(slots=True)
class Caller:
    """Who calls, and what the call passes in the pool's first script."""

    admission: Admission
    account_id: str
    principal: Principal | None  # None for a public call
    # the key was found in the Authorization header or the token parameter: the function
    # never sees them
    hides_key: bool


def _qualified(raw: str) -> str | None:
    """The qualified name of ``{raw}`` (``name`` or ``namespace.name``), or None."""
    try:
        namespace, name = split_qualified(validate_qualified(raw))
    except HotpoolError:
        return None
    return qualify(namespace, name)


def hotpool_key(header: str | None) -> tuple[str, str] | None:
    """The (key id, secret) of an Authorization value holding a hotpool key; None when it
    holds none (no value, or the app's own)."""
    if not header:
        return None
    try:
        return parse_token(header)
    except Unauthorized:
        return None


class Access:
    """The function and the caller of one request through ``trigger``."""

    def __init__(self, request: web.Request, raw_name: str, trigger: Trigger) -> None:
        self.request = request
        self.raw_name = raw_name
        self.trigger = trigger
        self.functions: FunctionService = request.app[FUNCTIONS]
        self.authenticator: Authenticator = request.app[AUTHENTICATOR]
        self.settings: Settings = request.app[SETTINGS]
        self.address = request.remote or ""
        self.principal: Principal | None = None
        self.bad_key = False
        self.metered = False

    def not_found(self) -> NotFound:
        # one message whatever the cause: unknown, another tenant's, the trigger off
        return NotFound(f"no {self.trigger.what} {self.raw_name[:80]!r}")

    def _mode(self, fv: FunctionVersion) -> str:
        return str(getattr(fv.config, self.trigger.setting))

    def _credential(self) -> str | None:
        """The Authorization value, else a ``Bearer`` of the token parameter if the trigger
        takes one."""
        header = self.request.headers.get("Authorization")
        param = self.trigger.token_param
        if not header and param is not None and param in self.request.query:
            return f"Bearer {self.request.query[param]}"
        return header

    async def function(self) -> FunctionVersion | None:
        """The function, if it exists and the trigger is on for it."""
        self.authenticator.check_address(self.address)
        token = hotpool_key(self._credential())
        if token is not None:
            try:
                self.principal = await self.authenticator.verify(*token)
            except Unauthorized:
                self.bad_key = True
                await self.authenticator.failed(self.address)
        # the cache holds valid qualified names only: a hit needs no parsing
        fv = self.functions.cached(self.raw_name)
        if fv is None:
            name = _qualified(self.raw_name)
            if name is None:
                return None
            fv = self.functions.cached(name) or await self._load(name)
        return fv if fv is not None and self._mode(fv) != "off" else None

    async def _load(self, name: str) -> FunctionVersion | None:
        """The function read from the store (None: there is none), metered or counted."""
        if self.principal is not None:
            # as /invoke: no request reaches the database unmetered
            await self.authenticator.meter(self.principal)
            self.metered = True
        try:
            fv: FunctionVersion | None = await self.functions.get(name)
        except NotFound:
            fv = None
        anonymous = self.principal is None and not self.bad_key
        if anonymous and (fv is None or self._mode(fv) != "public"):
            await self.authenticator.failed(self.address)
        return fv

    def caller(self, fv: FunctionVersion | None) -> tuple[FunctionVersion, Caller]:
        """The function and its caller once access is granted; else the error to answer."""
        settings = self.settings
        if fv is not None and self._mode(fv) == "public":
            admission = Admission(
                key_id=f"fn:{fv.name}",  # one public rate per function, whatever the trigger
                rate_per_s=settings.public_rate_per_s,
                burst=max(1, settings.public_rate_burst),
                namespace=fv.namespace,
                namespace_limit=settings.namespace_max_concurrency,
                hold_s=fv.config.timeout_s + settings.lease_grace_s,
            )
            return fv, Caller(admission, PUBLIC_ACCOUNT, None, hides_key=False)
        principal = self.principal
        if principal is None:
            if self.bad_key:
                raise Unauthorized(INVALID_KEY)
            if self.trigger.token_param is not None and not self._credential():
                raise Unauthorized(
                    "no API key: send 'Authorization: Bearer <key>' or the "
                    f"'{self.trigger.token_param}' query parameter"
                )
            # no key, or a header that holds none: parse_token says which and what to send
            parse_token(self._credential())
            raise Unauthorized(INVALID_KEY)  # not reached: a well-formed key was verified
        if fv is None:
            raise self.not_found()
        namespace, short_name = split_qualified(fv.name)  # once: each property splits anew
        try:
            principal.namespace(namespace)
            principal.check("invoke", namespace, short_name)
        except NotFound:
            raise self.not_found() from None
        hold_s = fv.config.timeout_s + settings.lease_grace_s
        admission = self.authenticator.admission(principal, namespace, hold_s, metered=self.metered)
        return fv, Caller(admission, principal.key_id, principal, hides_key=True)
