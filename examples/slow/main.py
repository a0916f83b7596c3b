"""Sleeps for a while, to exercise timeouts and the remaining-time clock."""

import time


def handler(event, context):
    """Sleep ``event["seconds"]`` seconds (default 2), then report the time left."""
    seconds = float((event or {}).get("seconds", 2))
    started = time.monotonic()
    time.sleep(seconds)
    return {
        "slept_s": round(time.monotonic() - started, 3),
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
