"""Loading the function: unpacking its zip safely and importing its handler."""

from __future__ import annotations

import importlib
import io
import os
import sys

from .config import module_name
from .errors import RequestError, describe

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    import asyncio
    import zipfile
    from collections.abc import Callable
    from typing import Any

    from .config import FunctionConfig
    from .context import LambdaContext

_MISSING = object()


class LoadedFunction:
    """Everything an initialised container needs to invoke its handler."""

    def __init__(
        self, config: FunctionConfig, handler: Callable[..., Any], log_stream: str
    ) -> None:
        self.config = config
        self.handler = handler
        self.log_stream = log_stream
        self._loop: asyncio.AbstractEventLoop | None = None

    def call(self, event: Any, context: LambdaContext) -> Any:
        """Run the handler; an awaitable it returns runs to completion on the persistent loop."""
        # Sync handlers that call asyncio.get_event_loop() get the persistent loop too; a
        # handler that never imported asyncio cannot call it, so it need not be imported.
        if "asyncio" in sys.modules:
            sys.modules["asyncio"].set_event_loop(self.event_loop())
        outcome = self.handler(event, context)
        if hasattr(outcome, "__await__"):
            return self.event_loop().run_until_complete(outcome)
        return outcome

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The persistent loop every awaitable and async generator of this function runs on."""
        # Only one invocation runs at a time, so creating it here cannot race.
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
        return self._loop


def load_handler(spec: str) -> tuple[Callable[..., Any] | None, dict[str, str] | None]:
    """Import ``module.function`` (or ``dir/module.function``): the handler, or the error to
    report instead."""
    name, attr = module_name(spec), spec.rpartition(".")[2]
    # The code was just written; stale directory caches would hide it from the importer.
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(name)
    except BaseException as exc:  # user code may raise anything, SystemExit included
        return None, describe(exc)
    handler = getattr(module, attr, _MISSING)
    if handler is _MISSING:
        message = f"module {name!r} has no attribute {attr!r}"
        return None, {"type": "HandlerNotFound", "message": message, "traceback": ""}
    if not callable(handler):
        message = f"{spec} is a {type(handler).__name__}, not a callable"
        return None, {"type": "HandlerNotCallable", "message": message, "traceback": ""}
    return handler, None


def unpack_code(code_zip_b64: str, code_dir: str, *, keep_modes: bool = False) -> None:
    """Extract the zip into code_dir after checking that no entry escapes it; with
    ``keep_modes``, files keep the permission bits the zip gives them (a custom runtime's
    ``bootstrap`` must stay executable), as Lambda's unpacking does."""
    import base64
    import zipfile
    import zlib

    try:
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(code_zip_b64)))
    except (ValueError, zipfile.BadZipFile) as exc:  # binascii.Error is a ValueError
        raise RequestError(400, "InvalidCodeZip", f"code_zip_b64: {exc}") from exc
    with archive:
        # Check every entry before writing any, so a refused zip leaves nothing behind.
        unsafe = [name for name in archive.namelist() if not _is_inside(name, code_dir)]
        if unsafe:
            raise RequestError(400, "InvalidCodeZip", f"zip entries escape the code dir: {unsafe}")
        try:
            os.makedirs(code_dir, exist_ok=True)
            archive.extractall(code_dir)
            if keep_modes:
                _restore_modes(archive, code_dir)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            raise RequestError(400, "InvalidCodeZip", f"corrupt zip: {exc}") from exc
        except OSError as exc:  # the function's doing: e.g. code larger than the container's /tmp
            unzipped_mb = sum(info.file_size for info in archive.infolist()) / 2**20
            raise RequestError(
                422, "CodeUnpackFailed",
                f"the code ({unzipped_mb:.0f} MB unzipped) could not be unpacked: {exc}; on "
                "Docker the code and layers share the container's /tmp "
                "(HOTPOOL_CONTAINER_TMPFS_MB)",
                traceback="",
            ) from exc  # fmt: skip


def _restore_modes(archive: zipfile.ZipFile, code_dir: str) -> None:
    """chmod what extractall wrote to the permission bits of entries made on Unix (only those
    nine bits: never setuid, setgid or sticky)."""
    for info in archive.infolist():
        mode = (info.external_attr >> 16) & 0o777
        if info.create_system == 3 and mode and not info.is_dir():
            os.chmod(os.path.join(code_dir, info.filename), mode | 0o400)


def _is_inside(name: str, root: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    # An absolute path, a parent step, or a Windows drive ("C:x") or UNC path ("\\host").
    if parts[0] == "" or ".." in parts or name[1:2] == ":":
        return False
    try:
        target = os.path.realpath(os.path.join(root, name))
    except ValueError:  # e.g. an embedded NUL byte
        return False
    return target == root or target.startswith(root + os.sep)


def custom_bootstrap(code_dir: str, opt_dir: str) -> str:
    """A custom runtime's executable: the package's ``bootstrap``, else a layer's (Lambda
    looks in /opt next); raises RequestError(422) naming what to fix."""
    places = [os.path.join(code_dir, "bootstrap")]
    if opt_dir:
        places.append(os.path.join(opt_dir, "bootstrap"))
    for path in places:
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return path
            problem = "the package's bootstrap is not executable"
            break
    else:
        problem = "no file named 'bootstrap' at the package's root (nor in a layer)"
    raise RequestError(
        422,
        "Runtime.InvalidEntrypoint",
        f"{problem}: a custom runtime's package holds an executable file named "
        "'bootstrap' at its root (chmod 755 before zipping: the zip keeps the mode)",
        traceback="",
        stdout="",
        stderr="",
    )
