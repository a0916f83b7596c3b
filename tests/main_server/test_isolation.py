"""Execution hardening: a function cannot read another function's code or environment, reach
the platform's services, or write outside /tmp. Checked from inside a function, on each backend
where the check applies.

The pids and memory limits have their own tests in test_docker_failures.py
(test_too_many_processes_hit_the_pids_limit, test_out_of_memory_*); they are not repeated here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiodocker
import orjson
import pytest

from tests.helpers import make_zip
from tests.stack import Stack

pytestmark = pytest.mark.integration

PROCESS_SKIP = "process backend: development-grade isolation, see README"

# distinctive values: a plain "one" would match half the files of any filesystem
ENV_SECRET = "one-env-7d41c2e0"
FILE_SECRET = "one-file-9b3e55a1"
VICTIM = make_zip(
    {
        "main.py": "def handler(event, context):\n    return 'victim'\n",
        "secret.txt": FILE_SECRET,
    }
)

# Runs inside the probing function: stdlib only; event["check"] picks what to try.
PROBE = make_zip(
    {
        "main.py": r'''
import errno
import os
import socket
import struct
import urllib.error
import urllib.request

# probe-own-code-3f9a: a marker the scan must find here, in the probe's own code

NO_CONTENT_SCAN = {"/proc", "/sys", "/dev", "/usr", "/lib", "/lib64", "/bin", "/sbin"}


def gateway():
    """The default gateway, from /proc/net/route (no `ip` in the image)."""
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000" and int(fields[3], 16) & 2:
                return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
    return None


def connect(host, port):
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return "connected"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def search(markers, extra_roots):
    """Files named secret.txt anywhere, and files holding a marker outside system dirs."""
    found = {m: [] for m in [*markers, "secret.txt"]}
    for root in ["/", *extra_roots]:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames
                           if os.path.join(dirpath, d) not in ("/proc", "/sys")]
            scan = not any(dirpath == d or dirpath.startswith(d + "/") for d in NO_CONTENT_SCAN)
            for name in filenames:
                path = os.path.join(dirpath, name)
                if name == "secret.txt":
                    found["secret.txt"].append(path)
                if not scan or os.path.islink(path):
                    continue
                try:
                    if os.path.getsize(path) > 1_000_000:
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                for marker in markers:
                    if marker.encode() in data:
                        found[marker].append(path)
    return {m: sorted(set(paths)) for m, paths in found.items()}


def processes(markers):
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    leaks, cmdlines = [], []
    for pid in pids:
        for what in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if any(m.encode() in data for m in markers):
                leaks.append(f"/proc/{pid}/{what}")
            if what == "cmdline":
                cmdlines.append(data.replace(b"\0", b" ").decode(errors="replace"))
    return {"pids": len(pids), "leaks": leaks, "cmdlines": cmdlines}


def call(url, body):
    """POST ``body`` to ``url``: (status, body) or the error."""
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=2.0) as resp:
            return [resp.status, resp.read().decode(errors="replace")]
    except urllib.error.HTTPError as exc:
        return [exc.code, exc.read().decode(errors="replace")]
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def write(paths):
    result = {}
    for path in paths:
        try:
            with open(path, "w") as f:
                f.write("x")
            result[path] = "written"
        except OSError as exc:
            result[path] = errno.errorcode.get(exc.errno, str(exc.errno))
    return result


def handler(event, context):
    check = event["check"]
    if check == "files":
        return search(event["markers"], event["roots"])
    if check == "processes":
        return processes(event["markers"])
    if check == "env":
        return dict(os.environ)
    if check == "connect":
        gw = gateway()
        return {f"{h}:{p}": connect(gw if h == "gateway" else h, p) for h, p in event["targets"]}
    if check == "http":
        return {url: call(url, event["body"]) for url in event["urls"]}
    if check == "write":
        return write(event["paths"])
    raise ValueError(check)
''',
    }
)


@pytest.fixture(params=["process", "docker"])
def stack_backend(request) -> str:
    return request.param


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    async with aiodocker.Docker() as client:
        yield client


async def _two_tenants(hotpool_stack, **overrides) -> Stack:
    """team-a's victim, warm (so its process is alive during the probe), and team-b's probe."""
    stack = await hotpool_stack(**overrides)
    resp = await stack.deploy("victim", VICTIM, env={"SECRET": ENV_SECRET}, namespace="team-a")
    assert resp.status == 201, await resp.text()
    resp = await stack.client.post("/v1/functions/victim/invoke?namespace=team-a", json={})
    assert await resp.json() == "victim"
    resp = await stack.deploy("probe", PROBE, namespace="team-b", timeout_s=60)
    assert resp.status == 201, await resp.text()
    return stack


async def _probe(stack: Stack, **event) -> object:
    resp = await stack.client.post(
        "/v1/functions/probe/invoke?namespace=team-b", data=orjson.dumps(event)
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _victim_entry(stack: Stack) -> list[str]:
    (entry,) = await stack.pool_entries("team-a.victim", 1)
    return entry.split("|")  # function, version, manager, container id, host:port


async def test_a_function_cannot_read_another_functions_code_or_env(hotpool_stack, stack_backend):
    if stack_backend == "process":
        pytest.skip(PROCESS_SKIP)
    stack = await _two_tenants(hotpool_stack)
    markers = [ENV_SECRET, FILE_SECRET]
    # the host paths where the process backend keeps code: absent from a container
    roots = [str(stack.settings.state_dir), str(stack.settings.containers_dir)]
    own = "probe-own-code-3f9a"
    found = await _probe(stack, check="files", markers=[*markers, own], roots=roots)
    assert found[own], "the scan should at least find the probe's own code in its /tmp"
    assert {m: found[m] for m in [*markers, "secret.txt"]} == {
        ENV_SECRET: [],
        FILE_SECRET: [],
        "secret.txt": [],
    }
    seen = await _probe(stack, check="processes", markers=markers)
    assert seen["leaks"] == []
    assert [c for c in seen["cmdlines"] if "bootstrap" in c], seen["cmdlines"]
    # its own PID namespace: tini, the bootstrap and little else; none of the host's
    assert seen["pids"] < 10, seen["cmdlines"]
    assert not [c for c in seen["cmdlines"] if "pytest" in c], seen["cmdlines"]


async def test_a_function_env_holds_nothing_of_the_platform(
    hotpool_stack, stack_backend, monkeypatch
):
    # the Manager runs in this process: a backend passing its environment on would leak this
    monkeypatch.setenv("HOTPOOL_TEST_CANARY", "canary-5c1e")
    stack = await _two_tenants(hotpool_stack)
    env = await _probe(stack, check="env")
    assert ENV_SECRET not in env.values() and "SECRET" not in env
    assert not [k for k in env if k.startswith("HOTPOOL_")], env
    assert "canary-5c1e" not in env.values()
    assert stack.settings.manager_secret not in "".join(env.values())
    assert "AWS_SECRET_ACCESS_KEY" not in env


async def test_a_function_cannot_reach_the_manager_main_or_redis(hotpool_stack, stack_backend):
    if stack_backend == "process":
        pytest.skip(PROCESS_SKIP)
    # the victim published on the host, as when Main runs elsewhere: on the bridge (the
    # default here) it has no host port, and the next test tries its own address
    stack = await _two_tenants(hotpool_stack, docker_reach="published")
    victim_port = int((await _victim_entry(stack))[4].rsplit(":", 1)[1])
    ports = {
        "manager": stack.settings.manager_port,
        "main": stack.client.server.port,
        "redis": 6379,
        "mariadb": 3306,
        "victim's published port": victim_port,
    }
    # all bound to 127.0.0.1 on the host: not the container's loopback, and not reachable
    # through the bridge's gateway either
    targets = [[host, port] for host in ("127.0.0.1", "gateway") for port in ports.values()]
    # a control: its own bootstrap, inside the container, does answer
    result = await _probe(stack, check="connect", targets=[*targets, ["127.0.0.1", 8080]])
    assert result.pop("127.0.0.1:8080") == "connected"
    assert len(result) == len(targets)
    assert not {t: r for t, r in result.items() if r == "connected"}, (ports, result)


async def test_a_function_cannot_reach_another_functions_container(
    hotpool_stack, stack_backend, docker
):
    if stack_backend == "process":
        pytest.skip(PROCESS_SKIP)
    stack = await _two_tenants(hotpool_stack)
    victim_id = (await _victim_entry(stack))[3]
    info = await docker.containers.container(victim_id).show()
    ips = [n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values() if n["IPAddress"]]
    assert ips, info["NetworkSettings"]
    # straight to the victim's bootstrap: no key, no namespace check, no execution record
    urls = [f"http://{ip}:8080/invoke" for ip in ips]
    result = await _probe(stack, check="http", urls=urls, body="{}")
    assert not [r for r in result.values() if isinstance(r, list)], result


async def test_the_root_filesystem_is_read_only(hotpool_stack, stack_backend):
    if stack_backend == "process":
        pytest.skip(PROCESS_SKIP)
    stack = await _two_tenants(hotpool_stack)
    # /opt is a symlink into /tmp, where the bootstrap unpacks layers (as on Lambda)
    paths = ["/etc/x", "/home/x", "/x", "/usr/x", "/var/x", "/var/runtime/x"]
    result = await _probe(stack, check="write", paths=[*paths, "/tmp/x"])
    assert result == {**dict.fromkeys(paths, "EROFS"), "/tmp/x": "written"}
