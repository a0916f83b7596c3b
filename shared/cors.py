"""The cross-origin rules of a web function (its ``cors`` setting), as a Lambda function
URL's ``Cors`` has them; main_server.web_cors applies them to requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from hotpool.shared.errors import InvalidRequest


@dataclass(frozen=True)
class Cors:
    """Cross-origin rules of a web function, as a Lambda function URL's ``Cors`` has them."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_s: int = 0
    allow_credentials: bool = False

    @classmethod
    def from_dict(cls, data: Any) -> Cors:
        if not isinstance(data, Mapping):
            raise InvalidRequest('cors must be a JSON object, e.g. {"allow_origins": ["*"]}')
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - known):
            raise InvalidRequest(
                f"unknown cors setting(s) {', '.join(map(str, unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for name in ("allow_origins", "allow_methods", "allow_headers", "expose_headers"):
            items = data.get(name, [])
            if not isinstance(items, list) or not all(
                isinstance(i, str) and 0 < len(i) <= 253 and _printable(i) for i in items
            ):
                raise InvalidRequest(f"cors.{name} must be a list of non-empty strings")
            if len(items) > 100:
                raise InvalidRequest(f"cors.{name} has {len(items)} entries; at most 100")
            values[name] = tuple(items)
        max_age = data.get("max_age_s", 0)
        if isinstance(max_age, bool) or not isinstance(max_age, int) or not 0 <= max_age <= 86400:
            raise InvalidRequest("cors.max_age_s must be a whole number from 0 to 86400")
        credentials = data.get("allow_credentials", False)
        if not isinstance(credentials, bool):
            raise InvalidRequest("cors.allow_credentials must be true or false")
        if credentials and "*" in values["allow_origins"]:
            raise InvalidRequest(
                "cors.allow_credentials cannot go with allow_origins '*': name the origins"
            )
        return cls(**values, max_age_s=max_age, allow_credentials=credentials)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _printable(text: str) -> bool:
    return text.isprintable() and "," not in text
