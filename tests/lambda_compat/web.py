"""What every web app of webapps.py must answer over real HTTP through ``/fn/``."""

from __future__ import annotations

import aiohttp

from tests.lambda_compat.webapps import PIXEL_PNG
from tests.stack import Stack

# each framework's own "not found" answer, so a 404 is known to come from the app, not hotpool
APP_404 = {
    "fastapi": '{"detail":"Not Found"}',
    "fastapi-v1": '{"detail":"Not Found"}',
    "flask-sls": "The requested URL was not found on the server.",
    "flask-sls-v1": "The requested URL was not found on the server.",
    "flask-apig": "The requested URL was not found on the server.",
    "django": "Page not found",
    "pt-http": "Not found",
    "pt-rest": "Not found",
}


def function_url(stack: Stack, name: str) -> str:
    """The function's own "URL": everything after it reaches the app as its path."""
    return str(stack.client.make_url(f"/fn/{name}"))


async def check_web_app(base: str, name: str) -> None:
    """Path parameters, query strings, cookies both ways, a binary image, JSON and form
    POSTs and the app's own 404, as a browser-like client with a cookie jar sends them."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies of an IP-address host
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{base}/items/5", params={"q": "hot pool & co"}) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"item_id": 5, "q": "hot pool & co"}
            assert resp.headers["X-Hotpool-Request-Id"]

        async with http.get(f"{base}/cookies/set") as resp:
            assert resp.status == 200, await resp.text()
            assert any(
                c.strip().startswith("flavour=oatmeal") for c in resp.headers.getall("Set-Cookie")
            )
        async with http.get(f"{base}/cookies/get") as resp:
            assert await resp.json() == {"flavour": "oatmeal"}, "the cookie did not come back"

        async with http.get(f"{base}/image.png") as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"].startswith("image/png")
            assert await resp.read() == PIXEL_PNG

        payload = {"order": [1, 2.5, None], "text": "naïve ☃"}
        async with http.post(f"{base}/echo", json=payload) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"received": payload}

        async with http.post(f"{base}/form", data={"name": "Ada Lovelace & co"}) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"name": "Ada Lovelace & co"}

        async with http.get(f"{base}/no/such/page") as resp:
            assert resp.status == 404
            assert APP_404[name] in await resp.text()
