"""The schedule endpoints: ``/v1/functions/{name}/schedules[/{schedule}]``.

Tenancy and scopes as for functions: ``?namespace=`` picks the namespace, another tenant's
function or schedule is a 404, writing needs ``deploy``, reading needs ``read``. The
scheduler (``main_server.scheduler``) reads the enabled schedules from the store on its own
clock: a change here takes effect within its reload interval.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from hotpool.main_server.request_input import read_limited, target
from hotpool.main_server.state import FUNCTIONS, SCHEDULER, SCHEDULES, SETTINGS
from hotpool.shared.errors import InvalidRequest, NotFound
from hotpool.shared.http import json_response
from hotpool.shared.models import split_qualified, validate_name
from hotpool.shared.redis_conn import redis_errors
from hotpool.shared.schedules import (
    MAX_SCHEDULE_EVENT_BYTES,
    Schedule,
    ScheduleLimits,
    from_body,
    iso_time,
)
from hotpool.shared.settings import Settings

routes = web.RouteTableDef()

NEXT_FIRES = 3  # the fire times a schedule's answer lists
# room in a PUT body for everything but the event (expression, timezone, JSON syntax)
BODY_SLACK_BYTES = 4096


def _limits(settings: Settings) -> ScheduleLimits:
    return ScheduleLimits(
        min_interval_s=settings.schedule_min_interval_s,
        max_event_bytes=settings.max_event_bytes,
        max_event_depth=settings.max_event_depth,
    )


def _schedule_name(request: web.Request) -> str:
    return validate_name(request.match_info["schedule"], "schedule name")


def describe(schedule: Schedule, settings: Settings, now: float) -> dict[str, Any]:
    """A schedule as the API answers it, with its next fire times (none while disabled)."""
    upcoming: list[float] = []
    if schedule.enabled:
        try:
            upcoming = schedule.parsed(settings.schedule_min_interval_s).upcoming(now, NEXT_FIRES)
        except InvalidRequest:  # refused since it was saved (a higher minimum interval)
            upcoming = []
    return {**schedule.to_dict(), "next_fires": [iso_time(t) for t in upcoming]}


async def _read_body(request: web.Request, settings: Settings) -> Any:
    limit = min(settings.max_event_bytes, MAX_SCHEDULE_EVENT_BYTES) + BODY_SLACK_BYTES
    raw = await read_limited(request, limit, "the schedule")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None


@routes.put("/v1/functions/{name}/schedules/{schedule}")
async def put_schedule(request: web.Request) -> web.Response:
    """Create (201) or replace (200) a schedule of the function."""
    qualified = target(request, "deploy")
    name = _schedule_name(request)
    settings, store = request.app[SETTINGS], request.app[SCHEDULES]
    body = await _read_body(request, settings)
    await request.app[FUNCTIONS].get(qualified, fresh=True)  # NotFound names the function
    namespace = split_qualified(qualified)[0]
    try:
        existing: Schedule | None = await store.get(namespace, qualified, name)
    except NotFound:
        existing = None
    now = time.time()
    schedule = from_body(
        body,
        namespace=namespace,
        function=qualified,
        name=name,
        existing=existing,
        now=now,
        limits=_limits(settings),
    )
    # read before the write: a Redis that is away fails the request before it changes anything
    progress = await _progress(request.app, [schedule])
    stored = await store.put(schedule, max_in_namespace=settings.schedule_max_per_namespace)
    status = 201 if existing is None else 200
    return json_response(describe(stored, settings, now) | progress[schedule.id], status=status)


@routes.get("/v1/functions/{name}/schedules")
async def list_schedules(request: web.Request) -> web.Response:
    """The function's schedules, by name."""
    qualified = target(request, "read")
    await request.app[FUNCTIONS].get(qualified, fresh=True)
    settings, now = request.app[SETTINGS], time.time()
    found = await request.app[SCHEDULES].list_for(qualified)
    progress = await _progress(request.app, found)
    return json_response(
        {"schedules": [describe(s, settings, now) | progress[s.id] for s in found]}
    )


@routes.get("/v1/functions/{name}/schedules/{schedule}")
async def get_schedule(request: web.Request) -> web.Response:
    qualified = target(request, "read")
    name = _schedule_name(request)
    namespace = split_qualified(qualified)[0]
    schedule = await request.app[SCHEDULES].get(namespace, qualified, name)
    progress = await _progress(request.app, [schedule])
    return json_response(
        describe(schedule, request.app[SETTINGS], time.time()) | progress[schedule.id]
    )


async def _progress(app: web.Application, schedules: list[Schedule]) -> dict[str, dict[str, Any]]:
    """Each schedule's latest tick fired, fires and misses, from the scheduler's state."""
    with redis_errors("the scheduler's state"):
        states = await app[SCHEDULER].claims.states(s.id for s in schedules)
    return {schedule_id: state.progress() for schedule_id, state in states.items()}


@routes.delete("/v1/functions/{name}/schedules/{schedule}")
async def delete_schedule(request: web.Request) -> web.Response:
    qualified = target(request, "deploy")
    name = _schedule_name(request)
    await request.app[SCHEDULES].delete(split_qualified(qualified)[0], qualified, name)
    return web.Response(status=204)
