"""Lambda's root log handler, installed the moment anything imports ``logging``.

Lambda's Python runtime (awslambdaric ``bootstrap._setup_logging``) puts a handler on the root
logger before the function's module is imported. Importing ``logging`` costs an idle container
about 2.5 MiB, so this runtime does not import it itself: an import hook installs the same
handler right after the first ``import logging`` anyone makes (the function, or a library it
imports). Nothing can log before that import, so the function sees what it would on Lambda:
a handler already on the root logger, ``logging.basicConfig()`` doing nothing, and the root
level left at WARNING unless a log level is configured.

This module itself never imports ``logging``; ``log_handler`` (which does) is imported by the
hook.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from types import ModuleType
    from typing import Any


class LogSettings:
    """The request id of the running call, and the format and level of log lines."""

    def __init__(self) -> None:
        # "" before the first call, as awslambdaric's filter gives at init
        self.request_id = ""
        self.json = False
        self.level = ""


settings = LogSettings()


def configure(log_format: str, log_level: str) -> None:
    """Choose the format and level, as the function's settings and environment ask, then
    install the handler now (``logging`` is imported already) or at its first import.

    Lambda's ``AWS_LAMBDA_LOG_FORMAT``/``AWS_LAMBDA_LOG_LEVEL`` apply as on Lambda; a function
    that asks for JSON lines and no level gets INFO, Lambda's default for JSON logs."""
    env_format = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "")
    settings.json = log_format == "json" or env_format.upper() == "JSON"
    level = (log_level or os.environ.get("AWS_LAMBDA_LOG_LEVEL", "")).upper()
    if not level and settings.json:
        level = "INFO"
    # awslambdaric reads TRACE as DEBUG; WARN and FATAL are logging's own aliases
    settings.level = "DEBUG" if level == "TRACE" else level
    if "logging" in sys.modules:
        _install(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _LoggingImportHook())


def write(text: str) -> None:
    """Write to the current ``sys.stdout``: the capture of the call (or /init) under way."""
    stream = sys.stdout if sys.stdout is not None else sys.__stdout__
    if stream is not None:
        stream.write(text)


def _install(logging: ModuleType) -> None:
    # a function whose own logging.py shadows the standard library's gets no handler (on
    # Lambda the runtime imported the real one first); its import must not fail because of us
    try:
        from . import log_handler

        log_handler.install(logging.getLogger(), settings)
    except Exception:
        pass


class _LoggingImportHook:
    """A meta path finder that lets ``logging`` load as usual, then installs the handler."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "logging":
            return None
        sys.meta_path.remove(self)  # once only, and the search below must not find us again
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _ThenInstall(spec.loader)
                return spec
        return None


class _ThenInstall:
    """A loader running the real one, then installing the handler on the new module."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _install(module)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ... for linecache & co
        return getattr(self._loader, name)
