"""hotpool's Python runtime entry point: serve one function over HTTP until SIGTERM or SIGINT.

Run this *folder*, the way the process backend and the runtime image do::

    python3 -I -S -u -B <this folder> --code-dir DIR [--opt-dir DIR] [--provided-dir DIR]
        [--host H] [--port P] [--port-file FILE]

``--opt-dir`` is where the function's layers are unpacked (``/opt`` in the runtime image);
without it, an /init with layers is refused.

Before anything else it reads the container's secret, one line, from stdin (the backend
writes it and closes the pipe) and points stdin at /dev/null; every request must then carry it
in X-Hotpool-Container-Secret. Not the environment: /proc/<pid>/environ keeps a process's
initial environment however os.environ changes, for the bootstrap and for Docker's init (PID 1)
alike, and user code runs as their user. No secret on stdin -> exit status 2.

After binding it writes the port to FILE (atomically, via FILE.tmp) and prints
``HOTPOOL_READY port=<n>`` to stderr. SIGTERM or SIGINT -> graceful shutdown, exit status 0;
bad arguments -> exit status 2. The protocol is in ``hotpool_runtime/__init__.py``.
``--provided-dir`` names a folder of packages the runtime provides (boto3 and its
dependencies, as Lambda's Python runtime does); /init puts it last on sys.path, so a copy the
function ships wins. Nothing in it is imported unless the function imports it.

Why a folder: Python runs a directory named on its command line by putting that directory
first on sys.path and importing its ``__main__.py``. It does so in isolated mode too (-I, which
otherwise keeps a script's own directory off sys.path; checked on CPython 3.11, the python3 of
Debian bookworm in the image), so the package beside this file imports with no sys.path edits
and no build step (a zipapp would need one, and runs the same way). runpy and importlib.util
come along; an idle container still measured smaller than with the single file this replaced.

Why a package: /init puts the function's code directory first on sys.path, so every top-level
name here could shadow a user module or be shadowed by one. Only two live at top level:
``__main__`` (always the running script, whoever asks) and ``hotpool_runtime``, a name no
function may use for its own module. The function's ``http11.py`` or ``loader.py`` stays its own.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from hotpool_runtime.http11 import serve
from hotpool_runtime.reaping import become_subreaper
from hotpool_runtime.runtime import Runtime

USAGE = (
    "usage: python3 -I -S -u -B <runtime folder> --code-dir DIR [--opt-dir DIR] "
    "[--provided-dir DIR] [--host H] [--port P] [--port-file FILE]  (the container secret on "
    "stdin, one line)"
)
MAX_SECRET_BYTES = 1024


def _write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(port))
    os.replace(tmp, path)


def _read_secret() -> bytes:
    """The first line of stdin; stdin then reads /dev/null, so user code finds nothing there."""
    data = b""
    while b"\n" not in data and len(data) <= MAX_SECRET_BYTES:
        chunk = os.read(0, MAX_SECRET_BYTES)
        if not chunk:
            break
        data += chunk
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return data.partition(b"\n")[0].strip()


def _parse_args(argv: list[str]) -> dict[str, str]:
    """The flags, each followed by its value; raises ValueError naming what is wrong."""
    options = {"--host": "127.0.0.1", "--port": "0", "--code-dir": "", "--port-file": "",
               "--opt-dir": "", "--provided-dir": ""}  # fmt: skip
    flags, values = argv[::2], argv[1::2]
    if unknown := [flag for flag in flags if flag not in options]:
        raise ValueError(f"unknown flag {unknown[0]!r}")
    if len(values) < len(flags):
        raise ValueError(f"{flags[-1]} needs a value")
    # as long: checked above; no strict=, which Python 3.9 (still a supported image) lacks
    options.update(zip(flags, values))  # noqa: B905
    if not options["--code-dir"]:
        raise ValueError("--code-dir is required")
    if not options["--port"].isdigit():
        raise ValueError(f"--port must be a number, got {options['--port']!r}")
    return options


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then return exit status 0 (2 for bad arguments)."""
    try:
        options = _parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        sys.__stderr__.write(f"bootstrap: {exc}\n{USAGE}\n")
        return 2
    secret = _read_secret()
    if not secret:
        sys.__stderr__.write(f"bootstrap: no container secret on stdin\n{USAGE}\n")
        return 2
    become_subreaper()  # before any user code runs: whatever it starts stays findable
    runtime = Runtime(options["--code-dir"], options["--opt-dir"], options["--provided-dir"])
    address = (options["--host"], int(options["--port"]))
    # Both signals raise KeyboardInterrupt in the main thread, unwinding the accept loop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with socket.create_server(address, backlog=64) as listener:
            port = listener.getsockname()[1]
            if options["--port-file"]:
                _write_port_file(options["--port-file"], port)
            sys.__stderr__.write(f"HOTPOOL_READY port={port}\n")
            sys.__stderr__.flush()
            serve(listener, runtime.routes(), secret)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    status = main()
    sys.__stdout__.flush()
    sys.__stderr__.flush()
    # os._exit: non-daemon threads started by user code must not keep a stopped container alive.
    os._exit(status)
