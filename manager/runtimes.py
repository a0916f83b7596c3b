"""How the process backend starts each runtime's bootstrap.

Every runtime's bootstrap takes the same flags (``--code-dir``, ``--opt-dir``, ``--host``,
``--port``, ``--port-file``), reads the container's secret from stdin and speaks the same
``/healthz``, ``/init``, ``/invoke`` protocol (``manager/runtime/python/hotpool_runtime``'s
docstring); only the program that runs it differs. The Docker backend needs none of this:
each runtime's image starts its own bootstrap (``deploy/runtimes/<runtime>/Dockerfile``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from hotpool.shared.errors import RuntimeImageMissing

RUNTIME_DIR = Path(__file__).parent / "runtime"
# the Python runtime: a folder that python3 runs as a whole (see its __main__.py)
PYTHON_BOOTSTRAP = RUNTIME_DIR / "python"
# the Node.js runtime: one script and its lib/ folder, Node's own modules only
NODEJS_BOOTSTRAP = RUNTIME_DIR / "nodejs" / "bootstrap.js"


# V8's young generation grows to 3 x 16 MiB semi-spaces under a stream of calls and keeps it:
# an idle container that had served 20,000 calls held 104 MiB (a bare node: 40), 64 MiB with
# 1 MiB semi-spaces, at no cost measured in calls per second (deploy/runtimes/nodejs/Dockerfile
# passes the same flags)
NODE_FLAGS = ("--max-semi-space-size=1",)


def process_command(runtime: str, provided_dir: Path) -> list[str]:
    """The command line, before the common flags, that runs ``runtime``'s bootstrap on this
    machine; ``provided_dir`` holds the packages the Python runtime provides (boto3, ...).
    Raises RuntimeImageMissing for a runtime this machine cannot run."""
    if runtime == "python":  # on this interpreter, isolated, without site-packages
        return [sys.executable, "-I", "-S", "-u", "-B", str(PYTHON_BOOTSTRAP),
                "--provided-dir", str(provided_dir)]  # fmt: skip
    if runtime == "nodejs":
        node = shutil.which("node") or shutil.which("nodejs")  # Debian once named it nodejs
        if node is None:
            raise RuntimeImageMissing(
                "the process backend runs the nodejs runtime with this machine's node, and "
                "none is on PATH: install Node.js 18 or later (Debian: apt-get install nodejs)"
            )
        return [node, *NODE_FLAGS, str(NODEJS_BOOTSTRAP)]
    if runtime == "provided":  # the relay to the package's bootstrap (Lambda's Runtime API)
        return [sys.executable, "-I", "-S", "-u", "-B", str(PYTHON_BOOTSTRAP),
                "--runtime", "provided"]  # fmt: skip
    raise RuntimeImageMissing(
        f"the process backend cannot run the {runtime!r} runtime; use the Docker backend "
        "and its image (deploy/build-images.sh)"
    )
