"""What the CLI needs to reach a hotpool server: its URL, its API key, its cache.

Read from an injectable environment like ``Settings.from_env``; the CLI is a client and takes
none of the server's settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def client_api_key(environ: Mapping[str, str] | None = None) -> str:
    """The API key the CLI sends: ``HOTPOOL_API_KEY``, else the one ``hotpool dev`` stored
    in its state directory."""
    env = os.environ if environ is None else environ
    if env.get("HOTPOOL_API_KEY"):
        return env["HOTPOOL_API_KEY"].strip()
    try:
        return client_key_file(env).read_text().strip()
    except OSError:
        return ""


def client_key_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``hotpool dev`` stores its admin key for the CLI."""
    env = os.environ if environ is None else environ
    return Path(env.get("HOTPOOL_STATE_DIR", ".hotpool")) / "admin.key"


def client_url(environ: Mapping[str, str] | None = None) -> str:
    """The Main URL the CLI talks to (``HOTPOOL_URL``)."""
    env = os.environ if environ is None else environ
    return env.get("HOTPOOL_URL", "http://127.0.0.1:8080").rstrip("/")


def client_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the CLI caches what it builds (vendored requirements): ``HOTPOOL_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/hotpool``, else ``~/.cache/hotpool``."""
    env = os.environ if environ is None else environ
    if env.get("HOTPOOL_CACHE_DIR"):
        return Path(env["HOTPOOL_CACHE_DIR"])
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "hotpool"
    return Path.home() / ".cache" / "hotpool"
