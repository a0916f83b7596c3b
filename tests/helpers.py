"""Small builders shared by the tests."""

from __future__ import annotations

import io
import os
import textwrap
import zipfile

from hotpool.benchmarks.devserver import spare_port


def make_zip(files: dict[str, str | bytes]) -> bytes:
    """A zip holding ``files`` (name -> source); sources are dedented."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            data = textwrap.dedent(content).encode() if isinstance(content, str) else content
            zf.writestr(name, data)
    return buf.getvalue()


def handler_zip(body: str, *, prelude: str = "") -> bytes:
    """A package whose main.handler runs ``body`` (indented into the function)."""
    source = textwrap.dedent(prelude) + "\n\ndef handler(event, context):\n"
    source += textwrap.indent(textwrap.dedent(body), "    ")
    return make_zip({"main.py": source})


def free_port() -> int:
    """A port free now (below the ephemeral range: see spare_port)."""
    return spare_port()


def service_env() -> dict[str, str]:
    """The environment of a ``hotpool dev|main|manager`` child: this process's without its
    ``HOTPOOL_*`` variables, and with /metrics off (every child on the default metrics ports
    would collide); a test that scrapes gives its child free ports instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPOOL_")}
    env.update(HOTPOOL_METRICS_PORT="0", HOTPOOL_MANAGER_METRICS_PORT="0")
    return env
