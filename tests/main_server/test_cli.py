"""The newcomer's path: ``hotpool dev``, then the CLI against it (README's quick start)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotpool.benchmarks.devserver import wait_announced
from tests.helpers import free_port, service_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hotpool.main_server.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@contextlib.contextmanager
def running_dev(cwd: Path, env: dict[str, str], log_path: Path) -> Iterator[dict[str, str]]:
    """``hotpool dev --port 0`` in ``cwd`` until the block ends; the URLs it announced."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hotpool.main_server.cli", "dev", "--port", "0"],
            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield wait_announced(log_path, ("main",), lambda: proc.poll() is None, 30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def dev(tmp_path):
    env = service_env()
    env["HOTPOOL_PREWARM_COUNT"] = "0"
    with running_dev(tmp_path, env, tmp_path / "dev.log") as urls:
        yield tmp_path, {**env, "HOTPOOL_URL": urls["main"]}


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


def test_dev_serves_mains_and_its_managers_metrics_on_their_own_ports(tmp_path):
    env = service_env()
    env.update(HOTPOOL_PREWARM_COUNT="0", HOTPOOL_METRICS_PORT=str(free_port()),
               HOTPOOL_MANAGER_METRICS_PORT=str(free_port()))  # fmt: skip
    log_path = tmp_path / "dev.log"
    with running_dev(tmp_path, env, log_path) as urls:
        main = _get(f"http://127.0.0.1:{env['HOTPOOL_METRICS_PORT']}/metrics")
        manager = _get(f"http://127.0.0.1:{env['HOTPOOL_MANAGER_METRICS_PORT']}/metrics")
        ready = json.loads(_get(urls["main"] + "/readyz"))
    assert "hotpool_redis_up 1.0" in main and "hotpool_managers_alive 1.0" in main
    assert "hotpool_manager_backend_up 1.0" in manager
    assert ready == {"ready": True, "checks": {"redis": "ok", "metadata": "ok"}}
    assert f":{env['HOTPOOL_METRICS_PORT']}/metrics" in log_path.read_text()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def test_a_port_in_use_is_one_line_naming_the_setting(tmp_path):
    env = service_env()
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


@pytest.mark.parametrize("setting", ["HOTPOOL_METRICS_PORT", "HOTPOOL_MANAGER_METRICS_PORT"])
def test_a_metrics_port_in_use_is_one_line_naming_its_setting(tmp_path, setting):
    env = service_env()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env[setting] = str(taken.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-m", "hotpool.main_server.cli", "dev", "--port", "0"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("hotpool:")]
    assert f"port {env[setting]} on 127.0.0.1 is already in use" in line
    assert f"choose another with {setting} (0: off)" in line
    assert "Traceback" not in result.stderr


def test_dev_on_free_ports_keeps_its_manager_id_across_restarts(tmp_path):
    """reconcile() finds what a crashed run left behind by the Manager id its containers carry:
    with --port 0 that id must not follow the port."""
    env = service_env()
    env["HOTPOOL_PREWARM_COUNT"] = "0"
    ids = []
    for run in range(2):
        log_path = tmp_path / f"dev{run}.log"
        with running_dev(tmp_path, env, log_path):
            pass
        ids += re.findall(r"manager (\S+) up at", log_path.read_text())
    assert len(ids) == 2 and ids[0] == ids[1] and "-dev-" in ids[0], ids


def _until(check, timeout_s: float = 60.0):
    """Poll ``check`` (a callable returning a truthy answer or None) until it answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = check()
        if answer:
            return answer
        time.sleep(0.2)
    raise AssertionError(f"nothing after {timeout_s} s")


def _status(request_id: str, env: dict[str, str], cwd: Path, *ended: str):
    """The event's status once it is one of ``ended``."""

    def ended_status():
        shown = _cli("status", request_id, env=env, cwd=cwd)
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        return status if status["status"] in ended else None

    return _until(ended_status)


def test_invoke_async_then_status(dev):
    cwd, env = dev
    assert _cli("deploy", str(ROOT / "examples" / "hello"), env=env, cwd=cwd).returncode == 0

    queued = _cli("invoke", "hello", "--async", "--data", '{"name": "Ada"}', env=env, cwd=cwd)
    assert queued.returncode == 0, queued.stderr
    accepted = json.loads(queued.stdout)
    request_id = accepted["request_id"]
    assert accepted["status_url"] == f"/v1/invocations/{request_id}"
    status = _status(request_id, env, cwd, "succeeded", "failed", "expired")
    assert (status["status"], status["result"]) == ("succeeded", {"message": "Hello, Ada!"})
    assert (status["function"], status["attempts"]) == ("hello", 1)

    # a repeated Idempotency-Key queues nothing and answers the first request's id
    first, again = (
        _cli("invoke", "hello", "--async", "--idempotency-key", "order-7", env=env, cwd=cwd)
        for _ in range(2)
    )
    assert first.returncode == again.returncode == 0, (first.stderr, again.stderr)
    assert json.loads(first.stdout)["request_id"] == json.loads(again.stdout)["request_id"]
    assert "used before" not in first.stderr and "used before" in again.stderr

    unknown = _cli("status", "00000000-0000-4000-8000-000000000000", env=env, cwd=cwd)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "error 404: no asynchronous invocation" in unknown.stderr
    missing = _cli("invoke", "nothere", "--async", env=env, cwd=cwd)
    assert missing.returncode == 2 and "404" in missing.stderr
    keyed = _cli("invoke", "hello", "--idempotency-key", "k", env=env, cwd=cwd)
    assert keyed.returncode == 2 and "add --async" in keyed.stderr
    schemeless = _cli("status", request_id, env={**env, "HOTPOOL_URL": env["HOTPOOL_URL"][7:]},
                      cwd=cwd)  # fmt: skip
    assert schemeless.returncode == 2 and "must start with http://" in schemeless.stderr
    keyless = _cli("status", request_id, env=env, cwd=cwd / "..")
    assert keyless.returncode == 2 and "HOTPOOL_API_KEY" in keyless.stderr


def test_dead_letters_list_redrive_and_delete(dev):
    cwd, env = dev
    assert _cli("deploy", str(ROOT / "examples" / "hello"), env=env, cwd=cwd).returncode == 0
    deployed = _cli(
        "deploy", str(ROOT / "examples" / "raises"), "--async-retries", "0",
        "--max-event-age-s", "600", "--on-failure", "hello", env=env, cwd=cwd,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    settings = json.loads(deployed.stdout)
    assert (settings["async_retries"], settings["max_event_age_s"]) == (0, 600)
    assert settings["on_failure"] == "hello"
    ids = [
        json.loads(_cli("invoke", "raises", "--async", env=env, cwd=cwd).stdout)["request_id"]
        for _ in range(2)
    ]
    for request_id in ids:
        failed = _status(request_id, env, cwd, "failed")
        assert (failed["reason"], failed["attempts"]) == ("RetriesExhausted", 1)

    def delivered():
        logs = _cli("logs", "hello", "--json", env=env, cwd=cwd)
        records = [r for r in json.loads(logs.stdout) if r.get("trigger") == "destination"]
        return records if len(records) == 2 else None

    assert all(record["status"] == "success" for record in _until(delivered))

    listed = _cli("dead-letters", "raises", env=env, cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ids  # oldest first
    assert all("RetriesExhausted" in line and "ValueError" in line for line in lines)
    letters = json.loads(_cli("dead-letters", "raises", "--json", env=env, cwd=cwd).stdout)
    assert [letter["request_id"] for letter in letters] == ids

    # by id: it runs again (its attempts go on counting) and fails into the list again
    one = _cli("dead-letters", "raises", "--redrive", "--id", ids[0], env=env, cwd=cwd)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout) == {"redriven": [ids[0]], "not_found": []}
    again = _until(lambda: _status(ids[0], env, cwd, "failed")["attempts"] == 2 or None)
    assert again
    unknown_id = "00000000-0000-4000-8000-000000000000"
    partly = _cli("dead-letters", "raises", "--redrive", "--id", ids[1], "--id", unknown_id,
                  env=env, cwd=cwd)  # fmt: skip
    assert partly.returncode == 1
    assert json.loads(partly.stdout) == {"redriven": [ids[1]], "not_found": [unknown_id]}
    assert f"raises has no dead letter {unknown_id}" in partly.stderr
    _until(lambda: _status(ids[1], env, cwd, "failed")["attempts"] == 2 or None)

    deleted = _cli("dead-letters", "raises", "--delete", ids[1], env=env, cwd=cwd)
    assert deleted.returncode == 0 and json.loads(deleted.stdout) == {"deleted": ids[1]}
    twice = _cli("dead-letters", "raises", "--delete", ids[1], env=env, cwd=cwd)
    assert twice.returncode == 2 and f"error 404: raises has no dead letter '{ids[1]}'" in (
        twice.stderr
    )
    everything = _cli("dead-letters", "raises", "--redrive", env=env, cwd=cwd)
    assert everything.returncode == 0, everything.stderr
    assert json.loads(everything.stdout) == {"redriven": [ids[0]], "not_found": []}

    stray = _cli("dead-letters", "raises", "--id", ids[0], env=env, cwd=cwd)
    assert stray.returncode == 2 and "use it with --redrive" in stray.stderr
    both = _cli("dead-letters", "raises", "--redrive", "--delete", ids[0], env=env, cwd=cwd)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    nothing = _cli("dead-letters", "nothere", env=env, cwd=cwd)
    assert nothing.returncode == 2 and "404" in nothing.stderr
    too_many = _cli("deploy", str(ROOT / "examples" / "raises"), "--async-retries", "3",
                    env=env, cwd=cwd)  # fmt: skip
    assert too_many.returncode == 2
    assert "async_retries must be a whole number from 0 to 2" in too_many.stderr
    itself = _cli("deploy", str(ROOT / "examples" / "raises"), "--on-success", "raises",
                  env=env, cwd=cwd)  # fmt: skip
    assert itself.returncode == 2 and "on_success names the function itself" in itself.stderr


def test_deploy_of_a_container_image_sends_no_code_and_says_what_is_wrong(dev):
    cwd, env = dev
    # the embedded default allows no image (HOTPOOL_IMAGE_ALLOW is empty): the request reached
    # the image path, so the answer is the operator's setting, not a missing code file
    done = _cli("deploy", "--image", "example.org/fn:1", "--name", "img", env=env, cwd=cwd)
    assert done.returncode != 0
    assert "container-image functions are off" in done.stderr
    assert "HOTPOOL_IMAGE_ALLOW" in done.stderr
    both = _cli("deploy", str(ROOT / "examples" / "hello"), "--image", "x:1", "--name", "f",
                env=env, cwd=cwd)  # fmt: skip
    assert both.returncode != 0 and "--image takes no path and needs --name" in both.stderr
    unnamed = _cli("deploy", "--image", "x:1", env=env, cwd=cwd)
    assert unnamed.returncode != 0 and "needs --name" in unnamed.stderr
    nothing = _cli("deploy", env=env, cwd=cwd)
    assert nothing.returncode != 0 and "or a container image with --image" in nothing.stderr
