"""Background loops that survive their step failing, and stop when cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared.redis_conn import REDIS_ERRORS

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
