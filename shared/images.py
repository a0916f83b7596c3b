"""Container-image functions (``image=...``): references, who may name which image, and the
pin a version keeps.

An image reference is written as Docker writes it: ``[registry[:port]/]path[:tag][@digest]``.
Which images a tenant may name is the operator's choice, ``HOTPOOL_IMAGE_ALLOW``: repository
prefixes, ``{namespace}`` standing for the deploying namespace (``registry.local/{namespace}/``
lets each tenant name only its own repositories). Nothing allowed means image functions are
off. hotpool's own images (``hotpool/...``) are never allowed: a function in a runtime image
would run the bootstrap outside the protocol the Manager expects.

A reference is resolved once, at deploy, by a Manager's Docker daemon, to the image's ID
(``sha256:...``, the digest of its configuration: content-addressed, the same on every node
that holds the image, with or without a registry). The version keeps that ID: re-tagging or
re-pushing the name never changes what a deployed version runs.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hotpool.shared.errors import Forbidden, InvalidRequest

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REFERENCE_RE = re.compile(
    # a first component is a registry only with a dot, a port or as localhost (as Docker has it)
    r"^(?P<repository>(?:(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|localhost)(?::[0-9]{1,5})?/"
    r"|[A-Za-z0-9-]+:[0-9]{1,5}/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?\Z"
)
IMAGE_ID_RE = re.compile(r"^sha256:[a-f0-9]{64}\Z")
MAX_REFERENCE_CHARS = 255
# the repositories of hotpool's own runtime images, never a function's
RESERVED_PREFIX = "hotpool/"
# Lambda's ImageConfig: EntryPoint and Command are lists of strings
MAX_ARGS = 32
MAX_ARG_CHARS = 1024
MAX_WORKDIR_CHARS = 1000
# the handler an image function is stored with: its image names what it runs
IMAGE_HANDLER = "image"
EMULATOR = "aws-lambda-rie"


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    return buffer.getvalue()


# what an image function's version is stored with as its code package: its code is the image
EMPTY_ZIP = _empty_zip()


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference."""

    repository: str
    tag: str
    digest: str

    @property
    def names(self) -> tuple[str, ...]:
        """How the resolved image must list this reference among its RepoTags/RepoDigests:
        proof the daemon resolved it as a name, not as the prefix of an image ID."""
        if self.digest:
            return (f"{self.repository}@{self.digest}",)
        return (f"{self.repository}:{self.tag or 'latest'}",)


def parse_reference(ref: str) -> ImageRef:
    """The reference's parts; InvalidRequest naming the expected form otherwise."""
    if not isinstance(ref, str) or len(ref) > MAX_REFERENCE_CHARS:
        raise InvalidRequest(f"image must be a reference of at most {MAX_REFERENCE_CHARS} chars")
    match = REFERENCE_RE.match(ref)
    if match is None:
        raise InvalidRequest(
            f"image {ref[:80]!r} is not an image reference: write it as Docker does, "
            "[registry/]repository[:tag][@sha256:digest], e.g. 'registry.local/team/fn:1'"
        )
    return ImageRef(match["repository"], match["tag"] or "", match["digest"] or "")


def allow_prefixes(raw: str) -> tuple[str, ...]:
    """``HOTPOOL_IMAGE_ALLOW`` as prefixes (comma-separated; empty: none)."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def check_allowed(ref: ImageRef, namespace: str, prefixes: Sequence[str]) -> None:
    """Forbidden unless the repository starts with one of ``prefixes`` (``{namespace}``
    replaced by the deploying namespace) and is not one of hotpool's own."""
    if not prefixes:
        raise Forbidden(
            "container-image functions are off on this hotpool: the operator allows images "
            "with HOTPOOL_IMAGE_ALLOW (repository prefixes)"
        )
    if ref.repository.startswith(RESERVED_PREFIX):
        raise Forbidden(f"image {ref.repository!r}: hotpool's own images cannot be functions")
    allowed = [p.replace("{namespace}", namespace) for p in prefixes]
    if not any(ref.repository.startswith(prefix) for prefix in allowed):
        raise Forbidden(
            f"image {ref.repository!r} is not allowed for namespace {namespace!r}; allowed "
            f"repository prefixes: {', '.join(allowed)}"
        )


def check_args(name: str, value: object) -> tuple[str, ...]:
    """An ImageConfig list (``image_command``, ``image_entrypoint``) as a tuple of strings."""
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not all(isinstance(a, str) for a in value):
        raise InvalidRequest(f'{name} must be a JSON list of strings, e.g. ["app.handler"]')
    if len(value) > MAX_ARGS or any(len(a) > MAX_ARG_CHARS or "\x00" in a for a in value):
        raise InvalidRequest(
            f"{name} takes at most {MAX_ARGS} strings of at most {MAX_ARG_CHARS} characters"
        )
    return value


def check_workdir(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_WORKDIR_CHARS or "\x00" in value:
        raise InvalidRequest(f"image_workdir must be a path of at most {MAX_WORKDIR_CHARS} chars")
    if value and not value.startswith("/"):
        raise InvalidRequest(f"image_workdir {value[:80]!r} must be an absolute path")
    return value


def check_image_config(config: Any) -> None:
    """The image settings of a ``FunctionConfig`` (its ``__post_init__``): lists made tuples,
    each checked, and none of them without ``image``."""
    object.__setattr__(
        config, "image_entrypoint", check_args("image_entrypoint", config.image_entrypoint)
    )
    object.__setattr__(config, "image_command", check_args("image_command", config.image_command))
    check_workdir(config.image_workdir)
    if not config.image:
        extras = (config.image_id, config.image_entrypoint, config.image_command)
        if any(extras) or config.image_workdir:
            raise InvalidRequest("image_* settings need image=<reference>")
        return
    parse_reference(config.image)
    if config.image_id and not IMAGE_ID_RE.match(config.image_id):
        raise InvalidRequest(f"image_id {config.image_id[:80]!r} must be sha256:<64 hex>")
    if config.runtime != "provided" or config.handler != IMAGE_HANDLER:
        raise InvalidRequest(
            "an image function runs its image's own runtime: leave runtime and handler unset "
            "(image_command overrides the image's CMD, where AWS's images name the handler)"
        )
    if config.layers:
        raise InvalidRequest("an image function takes no layers: put them in the image")


def without_emulator(entrypoint: tuple[str, ...] | list[str]) -> list[str]:
    """The entrypoint with AWS's Runtime Interface Emulator and its flags taken off."""
    args = list(entrypoint)
    if not args or os.path.basename(args[0]) != EMULATOR:
        return args
    rest = args[1:]
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if "=" not in flag and flag not in ("--enable-init-caching",) and rest:
            rest.pop(0)  # its value
    return rest


def emulator_override(image_entrypoint: Sequence[str]) -> tuple[str, ...]:
    """The ENTRYPOINT override an image that starts AWS's emulator needs: its own entrypoint
    without the emulator; ``()`` (run the image's own) for any other image."""
    runtime = without_emulator(image_entrypoint)
    return tuple(runtime) if runtime != list(image_entrypoint) else ()
