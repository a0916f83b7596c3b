"""Dependencies the Lambda way: a `requirements.txt` vendored by `hotpool deploy`, and a layer.

The serverless-wsgi README's Flask app is deployed from a folder holding only the user's
files and a requirements.txt naming Flask: the CLI must vendor it for the runtime's platform
(as `sam build` does) before upload. Powertools, published as a layer (as AWS publishes its
own Powertools layer), serves a function whose package holds nothing but its handler.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

from tests.lambda_compat import apps, pins
from tests.lambda_compat.events import sam_event
from tests.lambda_compat.harness import deploy, invoke, off_loop, output, record
from tests.lambda_compat.packages import App, zip_package
from tests.lambda_compat.sources import npm_package, vendored
from tests.lambda_compat.test_powertools import LOGGER

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 300


async def hotpool_cli(*args: str, url: str, key: str, cwd: Path) -> tuple[int, str, str]:
    """Run the `hotpool` CLI against the test stack, beside the loop that serves it."""
    env = {**os.environ, "HOTPOOL_URL": url, "HOTPOOL_API_KEY": key}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotpool.main_server.cli", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


async def test_deploy_vendors_requirements_txt(hotpool_stack, tmp_path):
    project = tmp_path / "flask-api"
    plugin = await off_loop(npm_package, pins.SERVERLESS_WSGI_NPM)
    write_tree(project, {
        **await off_loop(apps.serverless_wsgi_readme_app),
        "wsgi_handler.py": (plugin / "wsgi_handler.py").read_bytes(),
        "serverless_wsgi.py": (plugin / "serverless_wsgi.py").read_bytes(),
        ".serverless-wsgi": json.dumps({"app": "api.app"}).encode(),
        "requirements.txt": "\n".join(pins.FLASK).encode() + b"\n",
    })  # fmt: skip
    stack = await hotpool_stack()
    key = await stack.key("default", scopes="deploy,invoke,read")
    url = str(stack.client.make_url("")).rstrip("/")
    code, _, err = await hotpool_cli(
        "deploy", str(project), "--name", "flask-api", "--handler", "wsgi_handler.handler",
        url=url, key=key, cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    event = await sam_event("apigateway", "aws-proxy", path="cats", method="GET", body="")
    resp, body = await invoke(stack, "flask-api", event)
    assert resp.status == 200, body
    assert (body["statusCode"], body["body"]) == (200, "Cats")


def powertools_layer() -> bytes:
    """Powertools as a Lambda layer zip: the library under python/."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as layer:
        site = vendored([pins.POWERTOOLS])
        for path in sorted(site.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.name != ".spec.json":
                layer.write(path, f"python/{path.relative_to(site).as_posix()}")
    return buf.getvalue()


async def test_powertools_as_a_layer(hotpool_stack):
    stack = await hotpool_stack()
    resp = await stack.client.put(
        "/v1/layers/powertools",
        data=await off_loop(powertools_layer),
        headers={"Content-Type": "application/zip"},
    )
    assert resp.status == 201, await resp.text()
    version = (await resp.json())["version"]

    code = zip_package({"app.py": LOGGER})  # the handler alone: Powertools is in the layer
    app = App("pt-layered", "app.lambda_handler", code, {"env": {"POWERTOOLS_SERVICE_NAME": "pay"}})
    await deploy(stack, app, layers=f"powertools:{version}")
    resp, body = await invoke(stack, "pt-layered", {"charge_id": "ch_9"})
    assert resp.status == 200 and body == "hello world", body
    request_id = resp.headers["X-Hotpool-Request-Id"]
    lines = [
        json.loads(line)
        for line in output(await record(stack, "pt-layered", request_id)).splitlines()
        if line.startswith("{")
    ]
    assert lines and lines[0]["message"] == "Collecting payment"
    assert all(line["function_request_id"] == request_id for line in lines)
