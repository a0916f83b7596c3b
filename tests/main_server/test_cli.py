"""The newcomer's path: ``hotpool dev``, then the CLI against it (README's quick start)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hotpool.benchmarks.devserver import wait_announced

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hotpool.main_server.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def dev(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPOOL_")}
    env["HOTPOOL_PREWARM_COUNT"] = "0"
    log = open(tmp_path / "dev.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotpool.main_server.cli", "dev", "--port", "0"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        urls = wait_announced(tmp_path / "dev.log", ("main",), lambda: proc.poll() is None, 30)
        yield tmp_path, {**env, "HOTPOOL_URL": urls["main"]}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_quick_start(dev):
    cwd, env = dev
    # the first start printed an admin key once and stored it, private, for the CLI
    key_file = cwd / ".hotpool" / "admin.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().strip() in (cwd / "dev.log").read_text()

    deployed = _cli("deploy", str(ROOT / "examples" / "hello"), "--name", "hello",
                    "--env", "TOKEN=secret-value", env=env, cwd=cwd)  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["env"] == {"TOKEN": "***"}
    first = _cli("invoke", "hello", "--data", '{"name": "Ada"}', "-v", env=env, cwd=cwd)
    second = _cli("invoke", "hello", "--data", '{"name": "Ada"}', "-v", env=env, cwd=cwd)
    assert json.loads(first.stdout) == {"message": "Hello, Ada!"}
    assert "X-Hotpool-Cold-Start: true" in first.stderr
    assert "X-Hotpool-Cold-Start: false" in second.stderr

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = _cli("logs", "hello", env=env, cwd=cwd)
        if len(logs.stdout.splitlines()) >= 2:
            break
        time.sleep(0.2)
    lines = logs.stdout.splitlines()
    assert "warm" in lines[0] and "cold" in lines[1]  # newest first
    assert "hello" in _cli("ls", env=env, cwd=cwd).stdout

    failing = _cli("deploy", str(ROOT / "examples" / "raises"), env=env, cwd=cwd)
    assert failing.returncode == 0
    raised = _cli("invoke", "raises", env=env, cwd=cwd)
    assert raised.returncode == 1 and "function error ValueError" in raised.stderr

    assert _cli("rm", "hello", env=env, cwd=cwd).returncode == 0
    gone = _cli("invoke", "hello", env=env, cwd=cwd)
    assert gone.returncode == 2 and "404" in gone.stderr


def test_clear_messages_when_nothing_answers_or_the_key_is_wrong(dev):
    cwd, env = dev
    down = _cli("ls", env={**env, "HOTPOOL_URL": "http://127.0.0.1:1"}, cwd=cwd)
    assert down.returncode == 2
    assert "no hotpool server answers at http://127.0.0.1:1" in down.stderr
    wrong = _cli("ls", env={**env, "HOTPOOL_API_KEY": "hp_0000000000000000_" + "a" * 43}, cwd=cwd)
    assert wrong.returncode == 2 and "401" in wrong.stderr
    bad_env = _cli(
        "deploy", str(ROOT / "examples" / "hello"), "--env", "NOEQUALS", env=env, cwd=cwd
    )
    assert bad_env.returncode == 2 and "KEY=VALUE" in bad_env.stderr
    schemeless = _cli("ls", env={**env, "HOTPOOL_URL": env["HOTPOOL_URL"][7:]}, cwd=cwd)
    assert schemeless.returncode == 2 and "must start with http://" in schemeless.stderr
    # elsewhere than the dev folder, with no HOTPOOL_API_KEY: says where it looked
    keyless = _cli("ls", env=env, cwd=cwd / "..")
    assert keyless.returncode == 2 and "HOTPOOL_API_KEY" in keyless.stderr
    assert ".hotpool/admin.key" in keyless.stderr


def test_deploy_puts_a_function_on_the_web_with_its_settings(dev, tmp_path):
    cwd, env = dev
    app = tmp_path / "web"
    app.mkdir()
    (app / "main.py").write_text(
        "import logging\n"
        "logging.getLogger().setLevel(logging.INFO)\n"
        "def handler(event, context):\n"
        "    logging.getLogger().info('path %s', event['rawPath'])\n"
        "    return {'statusCode': 201, 'body': event['rawPath']}\n"
    )
    deployed = _cli(
        "deploy", str(app), "--name", "web", "--http", "public", "--log-format", "json",
        "--cors", '{"allow_origins": ["https://a.example"]}', env=env, cwd=cwd,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    settings = json.loads(deployed.stdout)
    assert (settings["http"], settings["log_format"]) == ("public", "json")
    assert settings["cors"]["allow_origins"] == ["https://a.example"]

    # no key: the function is public
    request = urllib.request.Request(
        f"{env['HOTPOOL_URL']}/fn/web/items/5", headers={"Origin": "https://a.example"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 201
        assert answer.read() == b"/items/5"
        assert answer.headers["Access-Control-Allow-Origin"] == "https://a.example"

    bad = _cli("deploy", str(app), "--name", "web", "--http", "open", env=env, cwd=cwd)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_a_second_dev_on_the_same_state_folder_is_refused_and_the_first_goes_on(dev):
    cwd, env = dev
    second = subprocess.run(
        [sys.executable, "-m", "hotpool.main_server.cli", "dev", "--port", "0"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 2
    assert "another hotpool dev" in second.stderr and "HOTPOOL_STATE_DIR" in second.stderr
    # the first still has its Redis socket and serves
    assert (cwd / ".hotpool" / "redis").exists()
    assert _cli("ls", env=env, cwd=cwd).returncode == 0


def test_a_port_in_use_is_one_line_naming_the_setting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPOOL_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hotpool.main_server.cli", "dev", "--port", str(port)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    assert "already in use" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_on_free_ports_keeps_its_manager_id_across_restarts(tmp_path):
    """reconcile() finds what a crashed run left behind by the Manager id its containers carry:
    with --port 0 that id must not follow the port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPOOL_")}
    env["HOTPOOL_PREWARM_COUNT"] = "0"
    ids = []
    for run in range(2):
        log_path = tmp_path / f"dev{run}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hotpool.main_server.cli", "dev", "--port", "0"],
                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                wait_announced(log_path, ("main",), lambda p=proc: p.poll() is None, 30)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        ids += re.findall(r"manager (\S+) up at", log_path.read_text())
    assert len(ids) == 2 and ids[0] == ids[1] and "-dev-" in ids[0], ids
