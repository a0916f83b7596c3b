"""The CLI's streaming and WebSocket parts against ``hotpool dev``: ``deploy --websocket
--ws-route-selection``, ``invoke`` of a generator printed as it arrives (and its error line),
``hotpool ws`` conversing with a function, and its refusal by a function without a socket."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.main_server.test_cli import ROOT, _cli, dev  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

# three items half a second apart; each says when the handler made it
SLOW_ITEMS = (
    "import time\n\n"
    "def handler(event, context):\n"
    "    for i in range(3):\n"
    "        if i:\n"
    "            time.sleep(0.5)\n"
    "        yield {'item': i, 'at': time.time()}\n"
)
FAILS_MIDWAY = (
    "def handler(event, context):\n"
    "    yield 'one item\\n'\n"
    "    raise ValueError('broke after the first item')\n"
)
# every message answered with the routeKey it was given and its body
ECHO = (
    "import json\n\n"
    "def handler(event, context):\n"
    "    ctx = event['requestContext']\n"
    "    if ctx['eventType'] != 'MESSAGE':\n"
    "        return {'statusCode': 200}\n"
    "    return {'statusCode': 200, 'body': json.dumps("
    "{'route': ctx['routeKey'], 'body': event['body']})}\n"
)


def _function_dir(root: Path, name: str, source: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "main.py").write_text(source)
    return folder


def _get_function(name: str, env: dict[str, str], cwd: Path) -> dict:
    """``GET /v1/functions/{name}`` with the admin key ``hotpool dev`` stored."""
    key = (cwd / ".hotpool" / "admin.key").read_text().strip()
    request = urllib.request.Request(
        f"{env['HOTPOOL_URL']}/v1/functions/{name}", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def _stream_lines(name: str, env: dict[str, str], cwd: Path) -> tuple[list, int]:
    """Run ``hotpool invoke name``, reading stdout line by line as it comes: the lines with
    their receive times, and the exit code."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotpool.main_server.cli", "invoke", name],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    lines = []
    try:
        while line := proc.stdout.readline():
            lines.append((time.time(), line.decode()))
        return lines, proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_invoke_prints_a_streamed_result_as_it_arrives_and_its_error_line(dev, tmp_path):  # noqa: F811
    cwd, env = dev
    for name, source in (("items", SLOW_ITEMS), ("midway", FAILS_MIDWAY)):
        deployed = _cli("deploy", str(_function_dir(tmp_path, name, source)), env=env, cwd=cwd)
        assert deployed.returncode == 0, deployed.stderr

    lines, code = _stream_lines("items", env, cwd)

    assert code == 0
    items = [json.loads(line) for _, line in lines]
    assert [item["item"] for item in items] == [0, 1, 2]
    # the first line was printed while the handler still had a second to go
    first_printed = lines[0][0]
    assert first_printed < items[-1]["at"], (first_printed, items)

    lines, code = _stream_lines("midway", env, cwd)

    assert code == 1
    assert lines[0][1] == "one item\n"
    # the last line of stdout is hotpool's error line
    error = json.loads(lines[-1][1])["hotpoolStreamError"]
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "broke after the first item"

    # an answer that is not a stream is printed as before: one JSON document
    assert _cli("deploy", str(ROOT / "examples" / "hello"), env=env, cwd=cwd).returncode == 0
    hello = _cli("invoke", "hello", "--data", '{"name": "Ada"}', env=env, cwd=cwd)
    assert hello.returncode == 0 and json.loads(hello.stdout) == {"message": "Hello, Ada!"}


def test_ws_converses_with_a_deployed_websocket_function(dev, tmp_path):  # noqa: F811
    cwd, env = dev
    deployed = _cli(
        "deploy", str(_function_dir(tmp_path, "echo", ECHO)), "--websocket", "key",
        "--ws-route-selection", "$request.body.type", env=env, cwd=cwd,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    config = _get_function("echo", env, cwd)
    assert (config["websocket"], config["ws_route_selection"]) == ("key", "$request.body.type")

    talked = _cli(
        "ws", "echo", "-m", '{"type": "greet", "n": 1}', "-m", '{"action": "greet"}',
        "--wait", "5", env=env, cwd=cwd,
    )  # fmt: skip

    assert talked.returncode == 0, talked.stderr
    answers = [json.loads(line) for line in talked.stdout.splitlines()]
    # in order, each routed by the body's "type", not the default "action"
    assert answers == [
        {"route": "greet", "body": '{"type": "greet", "n": 1}'},
        {"route": "$default", "body": '{"action": "greet"}'},
    ]


def test_ws_on_a_function_without_a_socket_is_refused_in_one_line(dev):  # noqa: F811
    cwd, env = dev
    assert _cli("deploy", str(ROOT / "examples" / "hello"), env=env, cwd=cwd).returncode == 0

    refused = _cli("ws", "hello", "-m", "hi", env=env, cwd=cwd)

    assert refused.returncode == 2
    assert refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    # a function with its socket off is the same 404 as an unknown one
    assert "the WebSocket was refused: 404" in refused.stderr
    assert "Traceback" not in refused.stderr
