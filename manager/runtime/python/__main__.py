"""hotpool's Python runtime entry point: serve one function over HTTP until SIGTERM or SIGINT.

Run this *folder*, the way the process backend and the runtime image do::

    python3 -I -S -u -B <this folder> --code-dir DIR [--opt-dir DIR] [--provided-dir DIR]
        [--host H] [--port P] [--port-file FILE]
        [--runtime provided [--external] [--runtime-api-host H] [--runtime-api-port P]]

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

``--runtime provided`` serves a custom runtime instead (``hotpool_runtime/relay.py``): the
same protocol, relayed to a program speaking the Lambda Runtime API, which it serves on
``--runtime-api-host`` (127.0.0.1) and ``--runtime-api-port`` (0: any free port). /init starts
the package's ``bootstrap``; with ``--external`` it starts nothing and waits for a runtime
started by someone else (a container image's entry point) to poll the API.
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

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from hotpool_runtime.relay import Relay

USAGE = (
    "usage: python3 -I -S -u -B <runtime folder> --code-dir DIR [--opt-dir DIR] "
    "[--provided-dir DIR] [--host H] [--port P] [--port-file FILE] [--runtime python|provided] "
    "[--external] [--runtime-api-host H] [--runtime-api-port P]  (the container secret on "
    "stdin, one line)"
)
# flags that take no value
SWITCHES = ("--external",)
# flags only a custom runtime's relay takes
RELAY_FLAGS = ("--external", "--runtime-api-host", "--runtime-api-port")
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
               "--opt-dir": "", "--provided-dir": "", "--runtime": "python", "--external": "",
               "--runtime-api-host": "127.0.0.1", "--runtime-api-port": "0"}  # fmt: skip
    given = set()
    args = iter(argv)
    for flag in args:
        if flag not in options:
            raise ValueError(f"unknown flag {flag!r}")
        given.add(flag)
        value = "1" if flag in SWITCHES else next(args, None)
        if value is None:
            raise ValueError(f"{flag} needs a value")
        options[flag] = value
    if not options["--code-dir"]:
        raise ValueError("--code-dir is required")
    for port in ("--port", "--runtime-api-port"):
        if not options[port].isdigit() or int(options[port]) > 65535:
            raise ValueError(f"{port} must be a port number, got {options[port]!r}")
    if options["--runtime"] not in ("python", "provided"):
        raise ValueError(f"--runtime must be python or provided, got {options['--runtime']!r}")
    if options["--runtime"] == "python" and (misplaced := given.intersection(RELAY_FLAGS)):
        raise ValueError(f"{sorted(misplaced)[0]} needs --runtime provided")
    return options


def _start_relay(options: dict[str, str]) -> Relay:
    """The relay of a custom runtime, its Runtime API listening already (a thread)."""
    import threading

    from hotpool_runtime import runtime_api
    from hotpool_runtime.peers import opened_by_descendant
    from hotpool_runtime.relay import Relay

    api = (options["--runtime-api-host"], int(options["--runtime-api-port"]))
    listener = socket.create_server(api, backlog=64)
    host, port = listener.getsockname()[:2]
    relay = Relay(options["--code-dir"], options["--opt-dir"], api_address=f"{host}:{port}",
                  external=bool(options["--external"]))  # fmt: skip
    # the runtime the relay starts is its descendant: nobody else may use the API (other
    # tenants share 127.0.0.1 on the process backend); an external runtime cannot be told
    authorize = None if relay.external else opened_by_descendant
    args = (listener, relay.handle_api, authorize)
    thread = threading.Thread(target=runtime_api.serve, args=args)
    thread.daemon = True
    thread.start()
    return relay


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
    # Both signals raise KeyboardInterrupt in the main thread, unwinding the accept loop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    address = (options["--host"], int(options["--port"]))
    runtime: Runtime | Relay | None = None
    try:
        if options["--runtime"] == "provided":
            runtime = _start_relay(options)
        else:
            runtime = Runtime(
                options["--code-dir"], options["--opt-dir"], options["--provided-dir"]
            )
        with socket.create_server(address, backlog=64) as listener:
            port = listener.getsockname()[1]
            if options["--port-file"]:
                _write_port_file(options["--port-file"], port)
            api = (
                f" runtime_api={runtime.api_address}" if options["--runtime"] == "provided" else ""
            )
            sys.__stderr__.write(f"HOTPOOL_READY port={port}{api}\n")
            sys.__stderr__.flush()
            serve(listener, runtime.routes(), secret)
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # an address in use, or one this machine does not have
        sys.__stderr__.write(f"bootstrap: cannot listen: {exc}\n")
        return 1
    finally:
        if options["--runtime"] == "provided" and runtime is not None:
            runtime.close()  # the custom runtime ends with its container
    return 0


if __name__ == "__main__":
    status = main()
    sys.__stdout__.flush()
    sys.__stderr__.flush()
    # os._exit: non-daemon threads started by user code must not keep a stopped container alive.
    os._exit(status)
