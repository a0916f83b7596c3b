"""Background loops that survive their step failing, and stop when cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from hotpool.shared.redis_conn import REDIS_ERRORS

log = logging.getLogger(__name__)


async def every(interval_s: float, what: str, step: Callable[[], Awaitable[object]]) -> None:
    """Run ``step()`` every ``interval_s`` until cancelled; a failing step is logged.

    Some client libraries turn a cancellation that lands mid-request into their own
    connection error; checking ``cancelling()`` keeps such a loop from outliving its cancel.
    """
    task = asyncio.current_task()
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from exc
            if isinstance(exc, REDIS_ERRORS):  # a service away: expected, and said each time
                log.warning("%s skipped: %s", what, exc)
            else:
                log.exception("%s failed", what)
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        await asyncio.sleep(interval_s)


async def follow_channel(
    redis: Redis,
    channel: str,
    on_message: Callable[[str], None],
    on_gap: Callable[[], None],
    what: str,
) -> None:
    """Call ``on_message`` for every message published on ``channel``, resubscribing for
    ever; ``on_gap`` runs whenever messages may have been missed (before each subscription
    is live, and after the feed is lost), so a cache built on the feed can start over."""
    task = asyncio.current_task()
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(channel)
                on_gap()
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        on_message(data.decode())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from exc
            log.warning("%s lost (%s); resubscribing", what, exc)
            on_gap()
            await asyncio.sleep(1.0)
