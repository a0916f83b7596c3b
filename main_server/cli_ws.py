"""The CLI's streaming and WebSocket parts (``hotpool.main_server.cli``): the deploy flags of
WebSocket functions, a streamed result printed as it arrives, and ``hotpool ws``, a client for
a WebSocket function.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import sys
import urllib.parse
from typing import Any

import aiohttp

from hotpool.main_server.cli_client import CliError, _check, _prepare, opened
from hotpool.shared.client_config import client_api_key, client_url
from hotpool.shared.models import WEBSOCKET_MODES

read_bytes = 64 * 1024
# what a refused upgrade means (Main says no more before the upgrade: the same 404 whatever
# the reason, so that nothing tells another tenant's function from an unknown one)
REFUSALS = {
    401: "no valid key: set HOTPOOL_API_KEY",
    403: "the key lacks the invoke scope, or $connect refused",
    404: "no such function in the key's namespace, or its websocket setting is off",
    429: "too many requests or connections; try again later",
    502: "$connect failed: see hotpool logs NAME",
}


def add_ws_settings(deploy: argparse.ArgumentParser) -> None:
    """``hotpool deploy``'s flags of WebSocket functions."""
    deploy.add_argument(
        "--websocket", choices=WEBSOCKET_MODES, help="the /ws/ WebSocket route (default off)"
    )
    deploy.add_argument(
        "--ws-route-selection", metavar="EXPR", help="routeKey of a message ($request.body.action)"
    )


def ws_settings(args: argparse.Namespace) -> dict[str, str]:
    """The deploy parameters the WebSocket flags set."""
    names = ("websocket", "ws_route_selection")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def invoke(name: str, event: bytes, verbose: bool) -> int:
    """Call a function; a streamed result is written to stdout as it arrives, any other is
    printed as JSON. A function error is 1."""
    path = f"/v1/functions/{urllib.parse.quote(name)}/invoke"
    req = _prepare("POST", path, event, content_type="application/json")
    with opened(req) as (status, headers, resp):
        if verbose:
            shown = ("Request-Id", "Cold-Start", "Duration-Ms", "Streamed", "Function-Error")
            for key in (f"X-Hotpool-{part}" for part in shown):
                if key in headers:
                    print(f"{key}: {headers[key]}", file=sys.stderr)
        if status == 200 and headers.get("X-Hotpool-Streamed") == "true":
            return _copy(resp)
        body = resp.read()
    if status == 500 and "X-Hotpool-Function-Error" in headers:
        error = json.loads(body)["error"]
        print(f"function error {error['type']}: {error['message']}", file=sys.stderr)
        print(error.get("traceback", ""), file=sys.stderr)
        return 1
    print(json.dumps(_check(status, body), indent=2))
    return 0


def _copy(resp: Any) -> int:
    """Each part of a streamed answer to stdout as soon as it is in; 1 when it ended with
    hotpool's error line."""
    last = b""
    while chunk := _read_part(resp):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        last = (last + chunk)[-read_bytes:]
    return 1 if b'\n{"hotpoolStreamError":' in last else 0


def _read_part(resp: Any) -> bytes:
    try:
        return resp.read1(read_bytes)
    except (ConnectionError, TimeoutError, http.client.IncompleteRead) as exc:
        raise CliError(f"the stream broke off: {exc!r}") from None


def add_ws_command(sub: Any) -> None:
    """``hotpool ws``."""
    p = sub.add_parser("ws", help="connect to a WebSocket function, send, print what comes back")
    p.add_argument("name")
    p.add_argument(
        "-m", "--message", action="append", metavar="TEXT",
        help="a message to send (repeat); without any, each line of stdin is one",
    )  # fmt: skip
    p.add_argument(
        "--wait", type=float, default=2.0, metavar="S",
        help="after the last message, how long to wait for more answers (default 2)",
    )  # fmt: skip
    p.add_argument("--namespace", help="namespace (default: the key's first)")
    p.set_defaults(func=cmd_ws)


def cmd_ws(args: argparse.Namespace) -> int:
    messages = args.message if args.message is not None else _stdin_lines()
    return asyncio.run(_converse(args.name, args.namespace, messages, args.wait))


def _stdin_lines() -> list[str]:
    return [line.rstrip("\n") for line in sys.stdin if line.strip()]


async def _converse(name: str, namespace: str | None, messages: list[str], wait_s: float) -> int:
    base = client_url().replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    # /ws/ names a function as /fn/ does: "name" in the key's namespace, or "namespace.name"
    qualified = f"{namespace}.{name}" if namespace else name
    url = f"{base}/ws/{urllib.parse.quote(qualified)}"
    key = client_api_key()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            reason = REFUSALS.get(exc.status, exc.message)
            raise CliError(f"the WebSocket was refused: {exc.status} ({reason})") from None
        except aiohttp.ClientConnectionError as exc:
            raise CliError(f"no hotpool server answers at {client_url()} ({exc})") from None
        async with ws:
            heard = [asyncio.get_running_loop().time()]
            receiver = asyncio.create_task(_print_messages(ws, heard))
            for message in messages:
                await ws.send_str(message)
            heard[0] = asyncio.get_running_loop().time()
            # until the socket closes, or nothing came for wait_s
            while not receiver.done():
                quiet_until = heard[0] + wait_s
                left = quiet_until - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                await asyncio.wait({receiver}, timeout=left)
            receiver.cancel()
    return 0


async def _print_messages(ws: aiohttp.ClientWebSocketResponse, heard: list[float]) -> None:
    """Print each message as it arrives (noting when in ``heard``), until the socket closes."""
    async for message in ws:
        heard[0] = asyncio.get_running_loop().time()
        if message.type == aiohttp.WSMsgType.TEXT:
            print(message.data, flush=True)
        elif message.type == aiohttp.WSMsgType.BINARY:
            print(f"<{len(message.data)} binary bytes>", flush=True)
    print(f"closed: {ws.close_code}", file=sys.stderr)
