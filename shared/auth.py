"""API keys and what they allow: key format, hashing, scopes, namespaces.

A key is ``hp_<key id>_<secret>``: the id finds the stored record, the secret is checked
against its SHA-256 (the secret is 256 random bits, so a fast hash is enough; nothing
weaker than the key itself is ever stored). Keys are shown once, at creation.

Scopes: ``admin`` (everything, keys included, in every namespace it names or ``*``),
``deploy`` (create, update, delete functions), ``invoke``, ``read`` (functions and their
invocation records). A key limited to one function may only invoke that function.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from hotpool.shared.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from hotpool.shared.models import DEFAULT_NAMESPACE, NAME_RE, qualify, validate_name

SCOPES = ("admin", "deploy", "invoke", "read")
ALL_NAMESPACES = "*"
KEY_RE = re.compile(r"^hp_([0-9a-f]{16})_([A-Za-z0-9_-]{43})\Z")


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret: str

    @property
    def token(self) -> str:
        return f"hp_{self.key_id}_{self.secret}"

    @property
    def secret_sha256(self) -> str:
        return hash_secret(self.secret)


def new_key() -> NewKey:
    return NewKey(secrets.token_hex(8), secrets.token_urlsafe(32))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(header: str | None) -> tuple[str, str]:
    """(key id, secret) from an ``Authorization: Bearer`` header, or Unauthorized."""
    if not header:
        raise Unauthorized("send an API key: Authorization: Bearer <key>")
    scheme, _, token = header.partition(" ")
    match = KEY_RE.match(token.strip()) if scheme.lower() == "bearer" else None
    if match is None:
        raise Unauthorized("the Authorization header must be 'Bearer hp_<id>_<secret>'")
    return match.group(1), match.group(2)


def secret_matches(secret: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_sha256)


def parse_scopes(raw: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in raw.split(",") if s.strip())
    unknown = scopes - set(SCOPES)
    if not scopes or unknown:
        raise InvalidRequest(f"scopes must be a comma-separated subset of {', '.join(SCOPES)}")
    return scopes


def validate_namespaces(namespaces: list[str], field: str = "namespaces") -> list[str]:
    """``namespaces`` if each is a valid name (or ``*``) listed once; else a 400 naming it."""
    if not namespaces:
        raise InvalidRequest(f"{field}: a key needs at least one namespace")
    for namespace in namespaces:
        if namespace != ALL_NAMESPACES and not NAME_RE.match(namespace):
            raise InvalidRequest(
                f"{field}: invalid namespace {namespace[:80]!r}: use 1-63 characters of a-z, "
                "0-9, '-' and '_', starting with a letter"
            )
    if len(set(namespaces)) != len(namespaces):
        raise InvalidRequest(f"{field}: each namespace may be listed only once")
    return namespaces


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified key's id, namespaces, scopes and optional function."""

    key_id: str
    namespaces: tuple[str, ...]
    scopes: frozenset[str]
    function: str | None = None  # qualified name: a per-function invoke key
    rate_per_s: float | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def namespace(self, requested: str | None) -> str:
        """The namespace a request works in: the one asked for if the key may see it.

        Another tenant's namespace is NotFound, never Forbidden: the answer must not confirm
        that it exists.
        """
        if requested is None:
            requested = (
                self.namespaces[0] if self.namespaces[0] != ALL_NAMESPACES else (DEFAULT_NAMESPACE)
            )
        validate_name(requested, what="namespace")  # '*' keys must not pass any string on
        if ALL_NAMESPACES in self.namespaces or requested in self.namespaces:
            return requested
        raise NotFound(f"namespace {requested[:80]!r} does not exist")

    def check(self, scope: str, namespace: str, name: str | None = None) -> None:
        """Raise unless the key may do ``scope`` on function ``name`` of ``namespace``."""
        if self.function is not None:
            # a per-function key: that one function, invoke only; everything else is unseen
            if name is None or qualify(namespace, name) != self.function:
                raise NotFound(f"function {name!r} does not exist" if name else "not found")
            if scope != "invoke":
                raise Forbidden("this key may only invoke its function")
            return
        if not (self.is_admin or scope in self.scopes):
            raise Forbidden(f"this key lacks the '{scope}' scope")
