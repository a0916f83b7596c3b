"""The web route driven by curl, a client that shares nothing with the server's code: query
strings, repeated headers, cookies both ways, a binary upload and download, JSON and form
posts, the app's own 404, access modes and a CORS preflight."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from tests.helpers import handler_zip
from tests.main_server.test_web import ECHO, IMAGE, PNG

pytestmark = pytest.mark.integration

# routes of a small app: the path picks what it answers
APP = handler_zip(
    """
    path = event["rawPath"]
    if path == "/login":
        return {"statusCode": 200, "cookies": ["session=abc; HttpOnly", "theme=dark"],
                "body": "welcome"}
    if path == "/whoami":
        return {"cookies": event.get("cookies", []), "query": event.get("queryStringParameters"),
                "tags": event["headers"].get("x-tag")}
    return {"statusCode": 404, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"detail": "Not Found", "path": path})}
    """,
    prelude="import json",
)


def _curl() -> str:
    path = shutil.which("curl")
    if path is None:
        pytest.skip("curl is not installed")
    return path


async def curl(*args: str) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, headers (lower-case names, every value) and body of one curl call."""
    proc = await asyncio.create_subprocess_exec(
        _curl(), "-s", "-i", "--max-time", "30", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
async def web(hotpool_stack):
    stack = await hotpool_stack()
    for name, code, mode in [("app", APP, "public"), ("echo", ECHO, "key"),
                             ("image", IMAGE, "public")]:  # fmt: skip
        assert (await stack.deploy(name, code, http=mode)).status == 201
    key = stack.client.session.headers["Authorization"]
    return str(stack.client.make_url("/fn")), key


async def test_query_repeated_headers_and_cookies_both_ways(web):
    base, _ = web
    status, headers, body = await curl(f"{base}/app/login")
    assert status == 200 and body == b"welcome"
    assert headers["set-cookie"] == ["session=abc; HttpOnly", "theme=dark"]
    status, headers, body = await curl(
        "-b", "session=abc; theme=dark", "-H", "X-Tag: a", "-H", "X-Tag: b",
        f"{base}/app/whoami?q=1&q=2&name=J%C3%BCrgen",
    )  # fmt: skip
    assert status == 200
    assert headers["content-type"] == ["application/json"]
    assert json.loads(body) == {
        "cookies": ["session=abc", "theme=dark"],
        "query": {"q": "1,2", "name": "Jürgen"},
        "tags": "a,b",
    }


async def test_a_binary_upload_and_download(web, tmp_path):
    base, _ = web
    image = tmp_path / "pixel.png"
    image.write_bytes(PNG)
    status, headers, body = await curl(
        "-H", "Content-Type: image/png", "--data-binary", f"@{image}", f"{base}/image/up"
    )
    assert status == 200
    assert headers["content-type"] == ["image/png"]
    assert body == PNG


async def test_json_and_form_posts_with_a_key(web):
    base, key = web
    status, _, body = await curl(
        "-H", f"Authorization: {key}", "-H", "Content-Type: application/json",
        "-d", '{"a": 1}', f"{base}/echo/items",
    )  # fmt: skip
    assert status == 200
    event = json.loads(body)
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["userAgent"].startswith("curl/")
    status, _, body = await curl(
        "-H", f"Authorization: {key}", "--data-urlencode", "msg=hi there", f"{base}/echo/form"
    )
    event = json.loads(body)
    assert event["isBase64Encoded"] is True
    assert event["headers"]["content-type"] == "application/x-www-form-urlencoded"


async def test_the_apps_404_and_access(web):
    base, _ = web
    status, _, body = await curl(f"{base}/app/missing/page")
    assert status == 404
    assert json.loads(body) == {"detail": "Not Found", "path": "/missing/page"}
    status, _, _ = await curl(f"{base}/echo/")  # a key function, no key
    assert status == 401
    status, _, _ = await curl("-H", "Authorization: Bearer hp_0000000000000000_" + "x" * 43,
                              f"{base}/echo/")  # fmt: skip
    assert status == 401


async def test_a_head_and_a_preflight_without_cors_reach_the_app(web):
    base, _ = web
    status, _, body = await curl("-I", f"{base}/app/missing")
    assert status == 404 and body == b""
    status, _, _ = await curl(
        "-X", "OPTIONS", "-H", "Origin: https://a.example",
        "-H", "Access-Control-Request-Method: GET", f"{base}/app/whoami",
    )  # fmt: skip
    assert status == 200  # no cors configured: the app answers the OPTIONS itself
