"""Hostile custom runtimes (``runtime=provided``): a bootstrap that never polls, that answers
for another request, that floods its output, that forks and exits, that streams a malformed or
endless response. Each is contained: the call fails clearly or succeeds bounded, and nothing it
started outlives its container."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.helpers import handler_zip
from tests.manager.provided_kit import provided_zip
from tests.stack import wait_for

pytestmark = pytest.mark.integration

API = 'API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"\n'
NEXT = """\
  H=$(mktemp)
  curl -sS -D "$H" -o "$H.body" "$API/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:space:]' | cut -d: -f2)
"""


def bootstrap(body: str) -> bytes:
    return provided_zip({"bootstrap": "#!/bin/bash\n" + API + body})


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def written_pid(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


async def gone(pid_file: Path) -> bool:
    """Whether the process whose pid the bootstrap wrote has ended (waiting a little)."""

    async def written() -> bool:
        return written_pid(pid_file) is not None

    assert await wait_for(written), f"the bootstrap never wrote {pid_file}"
    pid = written_pid(pid_file)
    assert pid is not None

    async def ended() -> bool:
        return not alive(pid)

    return await wait_for(ended)


async def deploy(stack, name: str, code: bytes, **params) -> None:
    resp = await stack.deploy(name, code, runtime="provided", handler="hostile", **params)
    assert resp.status == 201, await resp.text()


async def test_a_bootstrap_that_never_polls_fails_its_init_and_is_killed(hotpool_stack, tmp_path):
    pid_file = tmp_path / "pid"
    stack = await hotpool_stack()
    await deploy(stack, "mute", bootstrap('echo $$ > "$LEDGER"\nexec sleep 600\n'),
                 env={"LEDGER": str(pid_file)})  # fmt: skip
    resp = await stack.invoke("mute", {})
    body = orjson.loads(await resp.read())
    assert resp.status >= 400, body
    assert body["errorType"] == "Runtime.InitTimeout"
    assert "did not poll /2018-06-01/runtime/invocation/next" in body["errorMessage"]
    assert await gone(pid_file)
    assert stack.live_containers() == set()


async def test_a_response_for_another_request_is_refused_and_never_answers_the_call(
    hotpool_stack,
):
    code = bootstrap(
        "SECOND=none\nwhile true; do\n"
        + NEXT
        + """\
  WRONG=$(curl -s -o /dev/null -w '%{http_code}' "$API/invocation/not-$ID/response" -d '"stolen"')
  curl -s -o /dev/null "$API/invocation/$ID/response" \\
    -d "{\\"wrong_id_status\\": $WRONG, \\"previous_second_response\\": \\"$SECOND\\"}"
  SECOND=$(curl -s -o /dev/null -w '%{http_code}' "$API/invocation/$ID/response" -d '"twice"')
done
"""
    )
    stack = await hotpool_stack()
    await deploy(stack, "thief", code)
    resp = await stack.invoke("thief", {})
    assert resp.status == 200
    assert orjson.loads(await resp.read()) == {
        "wrong_id_status": 400, "previous_second_response": "none"
    }  # fmt: skip
    # the same container: its second response to the first call was refused too
    resp = await stack.invoke("thief", {})
    assert resp.headers["X-Hotpool-Cold-Start"] == "false"
    assert orjson.loads(await resp.read())["previous_second_response"] == "403"


async def test_a_bootstrap_flooding_its_output_is_bounded_and_keeps_serving(hotpool_stack):
    code = bootstrap(
        "while true; do\n"
        + NEXT
        + """\
  head -c 30000000 /dev/zero | tr '\\0' x
  head -c 30000000 /dev/zero | tr '\\0' y >&2
  curl -s -o /dev/null "$API/invocation/$ID/response" -d '"flooded"'
done
"""
    )
    stack = await hotpool_stack(log_limit_bytes=4096)
    await deploy(stack, "flood", code)
    for _ in range(2):
        resp = await stack.invoke("flood", {})
        assert (resp.status, orjson.loads(await resp.read())) == (200, "flooded")
    records = await stack.records("flood", 2)
    for rec in records:
        assert len(rec["stdout"].encode()) <= 4096 + 20 and rec["stdout"].startswith("xxxx")
        assert rec["stdout"].endswith("[truncated]") and rec["stderr"].endswith("[truncated]")


@pytest.mark.parametrize(
    "fork",
    [
        pytest.param('sleep 600 &\necho $! > "$LEDGER"\n', id="child"),
        pytest.param('( setsid sleep 600 & echo $! > "$LEDGER" )\n', id="double-fork-setsid"),
    ],
)
async def test_a_bootstrap_that_forks_and_exits_fails_and_leaves_nothing(
    hotpool_stack, tmp_path, fork
):
    pid_file = tmp_path / "pid"
    stack = await hotpool_stack()
    await deploy(stack, "forker", bootstrap(fork + "exit 0\n"), env={"LEDGER": str(pid_file)})
    resp = await stack.invoke("forker", {})
    body = orjson.loads(await resp.read())
    assert resp.status >= 400, body
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Runtime exited with error: exit status 0")
    assert await gone(pid_file)


ATTACKER = handler_zip(
    """
    import http.client
    results = {}
    host, port = event["api"].split(":")
    for method, path in (("GET", "/invocation/next"), ("POST", "/invocation/x/response")):
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request(method, "/2018-06-01/runtime" + path, body=b'"forged"')
            results[path] = conn.getresponse().status
        except OSError as exc:
            results[path] = repr(exc)
        finally:
            conn.close()
    return results
    """
)


async def test_another_tenants_function_cannot_use_a_custom_runtimes_api(hotpool_stack, tmp_path):
    # the process backend: every container shares the host's 127.0.0.1
    api_file = tmp_path / "api"
    victim = bootstrap(
        'echo "$AWS_LAMBDA_RUNTIME_API" > "$LEDGER"\nwhile true; do\n' + NEXT
        + '  curl -s -o /dev/null "$API/invocation/$ID/response" -d \'"genuine"\'\ndone\n'
    )  # fmt: skip
    stack = await hotpool_stack()
    await deploy(stack, "victim", victim, env={"LEDGER": str(api_file)})
    assert (await stack.invoke("victim", {})).status == 200
    api = api_file.read_text().strip()
    assert (await stack.deploy("attacker", ATTACKER)).status == 201
    resp = await stack.invoke("attacker", {"api": api})
    assert orjson.loads(await resp.read()) == {
        "/invocation/next": 403, "/invocation/x/response": 403
    }  # fmt: skip
    resp = await stack.invoke("victim", {})
    assert (resp.headers["X-Hotpool-Cold-Start"], orjson.loads(await resp.read())) == (
        "false", "genuine"
    )  # fmt: skip


# A hostile streamer in Python (the runtime images have python3): it polls, then POSTs a
# streamed response whose body is the bytes given (after the head), and polls again.
STREAMER = """#!/usr/bin/env python3
import os, socket, sys
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
body = {body}
while True:
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    head = sock.recv(65536).decode()
    rid = head.lower().split("lambda-runtime-aws-request-id: ")[1].split("\\r\\n")[0]
    post = socket.create_connection((host, int(port)))
    post.sendall(
        f"POST /2018-06-01/runtime/invocation/{{rid}}/response HTTP/1.1\\r\\nHost: x\\r\\n"
        "Lambda-Runtime-Function-Response-Mode: streaming\\r\\n"
        "Transfer-Encoding: chunked\\r\\n\\r\\n".encode()
    )
    try:
        for piece in body():
            post.sendall(piece)
        print("answered", post.recv(65536).split(b"\\r\\n", 1)[0].decode(), flush=True)
    except OSError as exc:
        print("cut:", type(exc).__name__, flush=True)
    post.close()
    sock.close()
"""


def streamer(body: str) -> bytes:
    return provided_zip({"bootstrap": STREAMER.format(body=body)})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param('lambda: [b"f" * 100000]', "too long", id="endless-size-line"),
        pytest.param('lambda: [b"1" * 40 + b"\\r\\n"]', "malformed chunk size", id="huge-size"),
        pytest.param(
            'lambda: [b"0\\r\\n"] + [b"x-pad: " + b"p" * 4000 + b"\\r\\n"] * 40', "trailers over",
            id="trailer-flood",
        ),
    ],
)  # fmt: skip
async def test_a_malformed_streamed_response_fails_the_call_and_the_runtime_serves_on(
    hotpool_stack, body, reason
):
    stack = await hotpool_stack()
    await deploy(stack, "bad-stream", streamer(body))
    for cold in ("true", "false"):  # refused, the runtime polls again: its container serves on
        resp = await stack.invoke("bad-stream", {})
        answer = orjson.loads(await resp.read())
        assert resp.status >= 400, answer
        assert resp.headers["X-Hotpool-Cold-Start"] == cold
        assert answer["errorType"] == "Runtime.TruncatedResponse"
        assert reason in answer["errorMessage"]


async def test_an_endless_chunk_is_cut_at_the_stream_limit_and_the_runtime_serves_on(
    hotpool_stack,
):
    # one chunk of 2**64 - 1 bytes, sent 64 KiB at a time for ever
    body = (
        'lambda: __import__("itertools").chain([b"ffffffffffffffff\\r\\n"], '
        '__import__("itertools").repeat(b"z" * 65536))'
    )
    stack = await hotpool_stack(max_stream_bytes=4 * 1024 * 1024)
    await deploy(stack, "endless", streamer(body))
    resp = await stack.invoke("endless", {})
    data = await resp.read()
    error = orjson.loads(data.rstrip(b"\n").rsplit(b"\n", 1)[-1])["hotpoolStreamError"]
    assert error["errorType"] == "ResponseTooLarge"
    [rec] = await stack.records("endless", 1)
    assert rec["aborted"] is True and rec["bytes_streamed"] <= 4 * 1024 * 1024 + 65536
    # it polled again: the same container answers (and is cut again)
    again = await stack.invoke("endless", {})
    await again.read()
    assert again.headers["X-Hotpool-Cold-Start"] == "false"
