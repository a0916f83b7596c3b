"""Starting the Node.js bootstrap (manager/runtime/nodejs/bootstrap.js) as the process backend
does, for the contract tests that run the Python runtime's cases against it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hotpool.manager.runtimes import process_command
from tests.manager.test_bootstrap import SECRET, Bootstrap, _wait_for_port


def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH: the Node.js runtime cannot run here (apt-get install nodejs)")
    return node


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., Bootstrap]]:
    """Factory starting Node bootstrap subprocesses (``opt_dir=True``: with an opt directory
    for layers); every one is killed at teardown."""
    node_or_skip()
    started: list[Bootstrap] = []

    def start(*, opt_dir: bool = False) -> Bootstrap:
        workdir = tmp_path / f"node{len(started)}"
        workdir.mkdir()
        port_file, log = workdir / "port", workdir / "stderr.log"
        command = process_command("nodejs", tmp_path / "provided")
        command += ["--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
        command += ["--code-dir", str(workdir / "code")]
        if opt_dir:
            command += ["--opt-dir", str(workdir / "opt")]
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr
            )
        assert process.stdin is not None
        process.stdin.write(f"{SECRET}\n".encode())
        process.stdin.close()
        port = _wait_for_port(process, port_file, log)
        started.append(Bootstrap(process, port, workdir, workdir / "code"))
        return started[-1]

    yield start
    for bootstrap in started:
        if bootstrap.process.poll() is None:
            bootstrap.process.kill()
        bootstrap.process.wait(timeout=5)
