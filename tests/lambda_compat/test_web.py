"""Real web apps behind ``ANY /fn/{function}/{path}``, over real HTTP.

Each framework's own Lambda adapter turns hotpool's API Gateway event (payload 2.0, or 1.0
for the REST adapters) into a request and its answer into the HTTP response, exactly as
behind a Lambda function URL. Clients: aiohttp with a cookie jar, curl, and headless Chromium.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import aiohttp
import pytest

from tests.lambda_compat import apps, docs
from tests.lambda_compat.harness import deploy, off_loop, output, record
from tests.lambda_compat.packages import App, source, zip_package
from tests.lambda_compat.web import check_web_app, function_url
from tests.lambda_compat.webapps import PIXEL_PNG, WEB_APPS
from tests.services import missing_service

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT_S = 60


@pytest.fixture(scope="module", params=sorted(WEB_APPS))
def web_app(request) -> App:
    return WEB_APPS[request.param]()


async def test_web_app_answers_like_behind_a_function_url(hotpool_stack, web_app):
    stack = await hotpool_stack()
    await deploy(stack, web_app, http="public")
    await check_web_app(function_url(stack, web_app.name), web_app.name)


def readme_app() -> App:
    return apps.serverless_wsgi("readme", apps.serverless_wsgi_readme_app(), app="api.app")


async def test_the_serverless_wsgi_readme_app(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(
        stack,
        await off_loop(readme_app),
        http="public",
    )
    base = function_url(stack, "readme")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/cats") as resp:
            assert (resp.status, await resp.text()) == (200, "Cats")
        async with http.get(f"{base}/dogs/7") as resp:
            assert (resp.status, await resp.text()) == (200, "Dog")


async def test_sam_hello_world_at_its_url(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(stack, await off_loop(apps.sam_hello_world), http="public")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{function_url(stack, 'sam-hello')}/hello") as resp:
            assert resp.status == 200
            assert await resp.json(content_type=None) == {"message": "hello world"}


async def test_a_function_error_is_a_bare_502_and_its_traceback_stays_in_the_record(hotpool_stack):
    stack = await hotpool_stack()
    code = zip_package({"lambda_function.py": docs.EXCEPTION})
    await deploy(stack, App("fails", "lambda_function.lambda_handler", code), http="public")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{function_url(stack, 'fails')}/anything") as resp:
            assert resp.status == 502
            assert await resp.json(content_type=None) == {"message": "Internal Server Error"}
            request_id = resp.headers["X-Hotpool-Request-Id"]
    rec = await record(stack, "fails", request_id)
    assert rec["status"] != "success"
    assert "Error!" in str(rec)


async def test_a_key_protected_function_wants_an_invoke_key(hotpool_stack):
    stack = await hotpool_stack()
    await deploy(stack, await off_loop(WEB_APPS["fastapi-mangum"]))  # http=key is the default
    url = f"{function_url(stack, 'fastapi')}/items/1"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 401
        key = await stack.key("default", scopes="invoke")
        async with http.get(url, headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"item_id": 1, "q": None}


async def run_client(*command: str) -> bytes:
    """A client program's stdout; it runs beside the loop that serves it, never blocking it."""
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLIENT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"{command[0]} failed: {err.decode()[-2000:]}"
    return out


async def test_curl_talks_to_a_flask_app(hotpool_stack, tmp_path: Path):
    if shutil.which("curl") is None:
        missing_service("curl is not installed (apt-get install curl; .ci/run installs it)")
    stack = await hotpool_stack()
    app = await off_loop(WEB_APPS["flask-serverless-wsgi"])
    await deploy(stack, app, http="public")
    base = function_url(stack, app.name)
    jar, image = tmp_path / "cookies.txt", tmp_path / "pixel.png"
    curl = (
        "curl",
        "--silent",
        "--show-error",
        "--fail-with-body",
        "--cookie",
        str(jar),
        "--cookie-jar",
        str(jar),
    )

    got = await run_client(*curl, f"{base}/items/9?q=a%20b")
    assert got == b'{"item_id":9,"q":"a b"}\n'
    await run_client(*curl, f"{base}/cookies/set")
    assert b"flavour\toatmeal" in jar.read_bytes()
    assert await run_client(*curl, f"{base}/cookies/get") == b'{"flavour":"oatmeal"}\n'
    await run_client(*curl, "--output", str(image), f"{base}/image.png")
    assert image.read_bytes() == PIXEL_PNG
    posted = await run_client(*curl, "--data-urlencode", "name=Grace Hopper", f"{base}/form")
    assert posted == b'{"name":"Grace Hopper"}\n'
    sent = await run_client(*curl, "--json", '{"n": 1}', f"{base}/echo")
    assert sent == b'{"received":{"n":1}}\n'
    status = await run_client(
        "curl",
        "--silent",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        f"{base}/missing",
    )
    assert status == b"404"


async def test_headless_chromium_renders_a_django_page(hotpool_stack):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        missing_service("Chromium is not installed (apt-get install chromium; .ci/run does)")
    stack = await hotpool_stack()
    app = await off_loop(WEB_APPS["django-apig-wsgi"])
    await deploy(stack, app, http="public")
    dom = await run_client(
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--dump-dom",
        f"{function_url(stack, app.name)}/page",
    )
    assert b'<h1 id="greeting">Hello from Django</h1>' in dom
    # the page's script ran: the browser got and executed what the function returned
    assert b'<p id="js">rendered by a browser</p>' in dom


async def test_web_calls_leave_records_like_invocations(hotpool_stack):
    stack = await hotpool_stack()
    app = await off_loop(WEB_APPS["powertools-http-2.0"])
    await deploy(stack, app, http="public")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{function_url(stack, app.name)}/items/3") as resp:
            assert resp.status == 200
            assert resp.headers["X-Hotpool-Cold-Start"] == "true"
            request_id = resp.headers["X-Hotpool-Request-Id"]
    rec = await record(stack, app.name, request_id)
    assert rec["status"] == "success" and rec["cold_start"] is True
    assert "Traceback" not in output(rec)


# a page whose script calls two APIs of another origin (localhost, not 127.0.0.1): one whose
# function has a cors setting that allows the page's origin, one without
CORS_PAGE = source('''
    import os

    SCRIPT = """
    function call(url, id) {
      fetch(url + "/echo", {method: "POST", body: JSON.stringify({from: id}),
                            headers: {"Content-Type": "application/json", "X-Trace": "1"}})
        .then(r => r.json())
        .then(j => show(id, j.received.from))
        .catch(e => show(id, "blocked"));
    }
    function show(id, text) {
      document.body.insertAdjacentHTML("beforeend", `<p id="${id}">${text}</p>`);
    }
    call("OPEN", "open"); call("CLOSED", "closed");
    """

    def lambda_handler(event, context):
        script = SCRIPT.replace("OPEN", os.environ["OPEN_API"])
        script = script.replace("CLOSED", os.environ["CLOSED_API"])
        html = f"<!doctype html><html><body><h1>CORS</h1><script>{script}</script></body></html>"
        return {"statusCode": 200, "headers": {"content-type": "text/html"}, "body": html}
''')


async def test_headless_chromium_calls_an_api_of_another_origin_as_its_cors_allows(hotpool_stack):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        missing_service("Chromium is not installed (apt-get install chromium; .ci/run does)")
    stack = await hotpool_stack()
    page_origin = str(stack.client.make_url("")).rstrip("/")
    other_origin = page_origin.replace("127.0.0.1", "localhost")
    api = await off_loop(WEB_APPS["fastapi-mangum"])
    cors = {"allow_origins": [page_origin], "allow_methods": ["POST"],
            "allow_headers": ["content-type", "x-trace"], "max_age_s": 60}  # fmt: skip
    await deploy(stack, api, http="public", cors=json.dumps(cors))
    closed = App("closed-api", api.handler, api.code)
    await deploy(stack, closed, http="public")
    env = {
        "OPEN_API": f"{other_origin}/fn/{api.name}",
        "CLOSED_API": f"{other_origin}/fn/closed-api",
    }
    page = App(
        "cors-page", "page.lambda_handler", zip_package({"page.py": CORS_PAGE}), {"env": env}
    )
    await deploy(stack, page, http="public")

    dom = await run_client(
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
        "--dump-dom", f"{function_url(stack, page.name)}/",
    )  # fmt: skip
    # the browser's preflight was answered by hotpool, and the POST reached the app
    assert b'<p id="open">open</p>' in dom, dom
    # without a cors setting the app's own answer to OPTIONS allows nothing: the browser blocks
    assert b'<p id="closed">blocked</p>' in dom, dom
