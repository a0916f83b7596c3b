"""Streamed responses and WebSocket functions against a real embedded hotpool (``hotpool dev``):

- time to first byte: a handler that yields its first item at once and then a few more,
  called through Main's ``/invoke`` and straight at its container (the bootstrap's chunked
  answer, with the secret Main sends), in alternation, from the same aiohttp client;
- WebSocket round trip: one connection sends a message and waits for the function's answer
  (the message echoed), ``messages`` times on a warm container; the baseline is as many
  synchronous ``/invoke`` calls of the same function from one connection;
- messages per second: ``clients`` connections each send and await, beside as many
  synchronous calls from ``clients`` connections;
- idle connections: Main's resident memory before and after ``idle_connections`` sockets are
  open and idle (each ran its ``$connect``), per connection.

Every figure is measured in the same run as its baseline, so their ratio holds on a busy
machine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from hotpool.benchmarks.devserver import DevServer, bench_zip, dev_server, process_stats
from hotpool.benchmarks.latency import entries
from hotpool.benchmarks.loadgen import percentile
from hotpool.shared.models import CONTAINER_SECRET_HEADER

STREAM_FUNCTION = "benchstream"
STREAM_HANDLER = """def handler(event, context):
    yield b"first"
    for i in range(int((event or {}).get("items", 3))):
        yield {"item": i}
"""
WS_FUNCTION = "benchws"
# answers every message with its body; $connect and $disconnect with nothing to send
WS_HANDLER = """def handler(event, context):
    context_ = event["requestContext"]
    if context_["eventType"] != "MESSAGE":
        return {"statusCode": 200}
    return {"statusCode": 200, "body": event.get("body", "")}
"""
EVENT = b'{"items": 3}'
settle_s = 1.0  # after the idle sockets are open, before Main's memory is read
connect_batch = 50  # idle connections opened at once


def _summary(latencies_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 50), 3),
        "p99_ms": round(percentile(latencies_ms, 99), 3),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


async def _first_byte_ms(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> float:
    """Milliseconds from sending the request to the first byte of its body; reads it whole."""
    begun = time.perf_counter()
    async with session.post(url, data=EVENT, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}: {(await resp.read())[:200]!r}")
        await resp.content.readany()
        first = (time.perf_counter() - begun) * 1000
        await resp.read()
    return first


async def _time_to_first_byte(server: DevServer, session: aiohttp.ClientSession, calls: int):
    main_url = f"{server.main_url}/v1/functions/{STREAM_FUNCTION}/invoke"
    main_headers = {**server.headers, "Content-Type": "application/json"}
    await _first_byte_ms(session, main_url, main_headers)  # the container starts here
    entry = entries(server, STREAM_FUNCTION)[0]
    direct_url = f"http://{entry.address}/invoke"
    direct_headers = {CONTAINER_SECRET_HEADER: entry.secret, "Content-Type": "application/json"}
    through_main: list[float] = []
    direct: list[float] = []
    for i in range(calls):  # alternating, so both sides see the same machine
        if i % 2:
            direct.append(await _first_byte_ms(session, direct_url, direct_headers))
            through_main.append(await _first_byte_ms(session, main_url, main_headers))
        else:
            through_main.append(await _first_byte_ms(session, main_url, main_headers))
            direct.append(await _first_byte_ms(session, direct_url, direct_headers))
    main_figures, direct_figures = _summary(through_main), _summary(direct)
    return {
        "through_main": main_figures,
        "direct": direct_figures,
        "overhead_p50_ms": round(main_figures["p50_ms"] - direct_figures["p50_ms"], 3),
        "ratio_p50": _ratio(main_figures["p50_ms"], direct_figures["p50_ms"]),
    }


def _ws(session: aiohttp.ClientSession, server: DevServer):
    """A WebSocket connection to the function, with the run's key."""
    url = server.main_url.replace("http://", "ws://", 1) + f"/ws/{WS_FUNCTION}"
    return session.ws_connect(url, headers=server.headers)


async def _round_trips(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        begun = time.perf_counter()
        await ws.send_str(f'{{"action": "echo", "n": {i}}}')
        answer = await ws.receive(timeout=30)
        if answer.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"the WebSocket answered {answer.type}: {answer.data!r}")
        latencies.append((time.perf_counter() - begun) * 1000)
    return latencies


async def _sync_calls(server: DevServer, session: aiohttp.ClientSession, count: int) -> list[float]:
    url = f"{server.main_url}/v1/functions/{WS_FUNCTION}/invoke"
    event = b'{"requestContext": {"eventType": "MESSAGE"}, "body": "x"}'
    headers = {**server.headers, "Content-Type": "application/json"}
    latencies = []
    for _ in range(count):
        begun = time.perf_counter()
        async with session.post(url, data=event, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"a synchronous call answered {resp.status}")
        latencies.append((time.perf_counter() - begun) * 1000)
    return latencies


async def _websocket(
    server: DevServer, session: aiohttp.ClientSession, messages: int, clients: int
) -> dict[str, Any]:
    async with _ws(session, server) as ws:
        await _round_trips(ws, 10)  # warm
        ws_ms = await _round_trips(ws, messages)
    sync_ms = await _sync_calls(server, session, messages)
    round_trip = {"websocket": _summary(ws_ms), "sync_invoke": _summary(sync_ms)}
    round_trip["ratio_p50"] = _ratio(
        round_trip["websocket"]["p50_ms"], round_trip["sync_invoke"]["p50_ms"]
    )

    async def ws_client() -> None:
        async with _ws(session, server) as ws:
            await _round_trips(ws, messages // clients)

    async def sync_client() -> None:
        await _sync_calls(server, session, messages // clients)

    rates = {}
    for name, client in (("websocket", ws_client), ("sync_invoke", sync_client)):
        begun = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        rates[name] = round(clients * (messages // clients) / (time.perf_counter() - begun), 1)
    rates["ratio"] = _ratio(rates["websocket"], rates["sync_invoke"])
    rates["clients"] = clients
    return {"round_trip": round_trip, "messages_per_s": rates}


async def _idle_connections(server: DevServer, session: aiohttp.ClientSession, count: int):
    before = process_stats(server.pid)["rss_mib"]
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    try:
        for start in range(0, count, connect_batch):
            batch = min(connect_batch, count - start)
            sockets += await asyncio.gather(*(_ws(session, server) for _ in range(batch)))
        await asyncio.sleep(settle_s)
        after = process_stats(server.pid)["rss_mib"]
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "connections": len(sockets),
        "main_rss_before_mib": round(before, 1),
        "main_rss_after_mib": round(after, 1),
        "kib_per_connection": round((after - before) * 1024 / max(1, len(sockets)), 1),
    }


async def _measure(server: DevServer, ttfb_calls: int, messages: int, clients: int, idle: int):
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        return {
            "time_to_first_byte": await _time_to_first_byte(server, session, ttfb_calls),
            "websocket": await _websocket(server, session, messages, clients),
            "idle_connections": await _idle_connections(server, session, idle),
        }


def measure(
    backend: str, *, ttfb_calls: int, messages: int, clients: int, idle_connections: int
) -> dict[str, Any]:
    """The streaming and WebSocket figures of one backend (see the module docstring)."""
    # the per-connection message rate is a limit, not what is measured
    with dev_server(backend=backend, ws_messages_per_s=1_000_000) as server:
        server.deploy(STREAM_FUNCTION, bench_zip(STREAM_HANDLER))
        server.deploy(WS_FUNCTION, bench_zip(WS_HANDLER), websocket="key")
        return asyncio.run(_measure(server, ttfb_calls, messages, clients, idle_connections))
