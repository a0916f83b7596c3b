"""The asynchronous invocation API: accept an event (202), its status, the dead letters.

``POST /v1/functions/{name}/invoke`` with ``X-Hotpool-Invocation-Type: Event`` (or Lambda's
``X-Amz-Invocation-Type``, or ``?async=true``) comes here from ``routes.invoke``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from aiohttp import web

from hotpool.main_server.async_outcome import new_event
from hotpool.main_server.auth import PRINCIPAL
from hotpool.main_server.request_input import read_limited, target
from hotpool.main_server.state import ASYNC_CONSUMER, ASYNC_QUEUE, FUNCTIONS, SETTINGS
from hotpool.shared.async_queue import Accepted
from hotpool.shared.auth import Principal
from hotpool.shared.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    StoreUnavailable,
    TooManyRequests,
)
from hotpool.shared.http import json_response
from hotpool.shared.models import FunctionVersion, split_qualified
from hotpool.shared.redis_conn import redis_errors

routes = web.RouteTableDef()

INVOCATION_TYPE_HEADERS = ("X-Hotpool-Invocation-Type", "X-Amz-Invocation-Type")
IDEMPOTENCY_RE = re.compile(r"^[\x21-\x7e]{1,256}\Z")
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
max_dead_letters_page = 1000
max_redrive_ids = 1000
# {"request_ids": [...]} of max_redrive_ids ids, with room for spacing
max_redrive_body_bytes = 64 * 1024
queue_full_retry_after_s = 1.0
# the status's own fields, as they are in Redis and as the API names them
TIMESTAMPS = ("accepted_at", "started_at", "finished_at", "next_at")
COUNTS = ("attempts", "retries", "throttles", "version", "result_bytes")


def wants_async(request: web.Request) -> bool:
    """Whether an invoke request asks for an asynchronous call (Lambda's InvocationType)."""
    # every input is checked before any decides: a bad value is a 400, never ignored, and
    # two inputs that disagree are a 400 too, as either answer would ignore one of them
    said: dict[str, bool] = {}
    for header in INVOCATION_TYPE_HEADERS:
        value = request.headers.get(header)
        if value is not None:
            if value.lower() not in ("event", "requestresponse"):
                raise InvalidRequest(
                    f"{header} must be Event or RequestResponse, got {value[:40]!r}"
                )
            said[header] = value.lower() == "event"
    raw = request.query.get("async")
    if raw is not None:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise InvalidRequest(f"async must be true or false, got {raw[:40]!r}")
        said["async"] = raw.lower() in ("true", "1")
    if len(set(said.values())) > 1:
        asked = ", ".join(f"{name} {'async' if a else 'sync'}" for name, a in said.items())
        raise InvalidRequest(f"the request asks for both a sync and an async call ({asked})")
    return any(said.values())


async def accept(
    request: web.Request, fv: FunctionVersion, event: bytes, request_id: str
) -> web.Response:
    """Queue the event durably and answer 202, or 429 when the namespace's queue is full."""
    app = request.app
    settings = app[SETTINGS]
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not IDEMPOTENCY_RE.match(idempotency_key):
        raise InvalidRequest("Idempotency-Key must be 1-256 printable ASCII characters")
    fields = new_event(fv, event.decode(), time.time(), request_id=request_id)
    limit = settings.async_max_queued_per_namespace
    with redis_errors("the asynchronous queue"):
        outcome, first, replicated = await app[ASYNC_QUEUE].accept(
            request_id, fields, limit=limit, idempotency_key=idempotency_key,
            idempotency_ttl_s=settings.async_idempotency_ttl_s,
            wait_replicas=settings.async_wait_replicas,
            wait_timeout_s=settings.async_wait_timeout_s,
        )  # fmt: skip
        if outcome is Accepted.FULL:
            raise TooManyRequests(
                f"namespace {fv.namespace!r} has {limit} asynchronous events queued, its limit "
                "(HOTPOOL_ASYNC_MAX_QUEUED_PER_NAMESPACE); retry later",
                retry_after_s=queue_full_retry_after_s,
            )
    if outcome is not Accepted.FULL and replicated < settings.async_wait_replicas:
        raise _not_replicated(first, replicated, settings.async_wait_replicas, idempotency_key)
    app[ASYNC_CONSUMER].notice(fv.namespace)
    headers = {"X-Hotpool-Request-Id": first, "Location": status_path(first)}
    if outcome is Accepted.DUPLICATE:
        headers["X-Hotpool-Idempotent-Replay"] = "true"
    return json_response(
        {"request_id": first, "status_url": status_path(first)}, status=202, headers=headers
    )


def _not_replicated(
    request_id: str, acknowledged: int, replicas: int, idempotency_key: str | None
) -> StoreUnavailable:
    advice = (
        "send it again with the same Idempotency-Key: that queues nothing twice and answers "
        "202 once the replicas hold it"
        if idempotency_key
        else "sending it again without an Idempotency-Key would queue it twice"
    )
    return StoreUnavailable(
        f"event {request_id} is queued on the Redis primary, but only {acknowledged} of "
        f"{replicas} replicas hold it (HOTPOOL_ASYNC_WAIT_REPLICAS): it runs unless the "
        f"primary fails first; {advice}",
        request_id=request_id,
    )


def status_path(request_id: str) -> str:
    return f"/v1/invocations/{request_id}"


def _visible(principal: Principal, qualified: str, scopes: tuple[str, ...]) -> None:
    """NotFound unless the key sees the function; Forbidden unless it has one of ``scopes``."""
    namespace, name = split_qualified(qualified)
    principal.namespace(namespace)
    denied: Forbidden | None = None
    for scope in scopes:
        try:
            principal.check(scope, namespace, name)
            return
        except Forbidden as exc:
            denied = exc
    assert denied is not None
    raise denied


@routes.get("/v1/invocations/{request_id}")
async def invocation_status(request: web.Request) -> web.Response:
    request_id = request.match_info["request_id"]
    missing = NotFound(f"no asynchronous invocation {request_id[:80]!r}")
    if not REQUEST_ID_RE.match(request_id):
        raise missing
    with redis_errors("the asynchronous queue"):
        state = await request.app[ASYNC_QUEUE].state(request_id)
    if state is None or "function" not in state:
        raise missing
    try:
        _visible(request[PRINCIPAL], state["function"], ("read", "invoke"))
    except NotFound:
        raise missing from None
    return json_response(describe(state))


def describe(state: dict[str, str]) -> dict[str, Any]:
    """An event's status as the API shows it."""
    namespace, name = split_qualified(state["function"])
    out: dict[str, Any] = {
        "request_id": state.get("request_id"),
        "function": name,
        "namespace": namespace,
        "status": state.get("status"),
        "trigger": state.get("trigger", "async"),
    }
    for field in COUNTS:
        if field in state:
            out[field] = int(float(state[field]))
    for field in TIMESTAMPS:
        if field in state:
            out["next_attempt_at" if field == "next_at" else field] = float(state[field])
    if "result" in state:
        out["result"] = orjson.loads(state["result"])
    if state.get("result_truncated"):
        out["result_truncated"] = True
    for field in ("error", "errors"):
        if field in state:
            out[field] = orjson.loads(state[field])
    if "reason" in state and state.get("status") in ("failed", "expired"):
        out["reason"] = state["reason"]
    return out


async def _function(request: web.Request, scope: str) -> FunctionVersion:
    return await request.app[FUNCTIONS].get(target(request, scope), fresh=True)


@routes.get("/v1/functions/{name}/dead-letters")
async def list_dead_letters(request: web.Request) -> web.Response:
    raw_limit = request.query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= max_dead_letters_page:
        raise InvalidRequest(f"limit must be a whole number from 1 to {max_dead_letters_page}")
    fv = await _function(request, "read")
    with redis_errors("the asynchronous queue"):
        letters = await request.app[ASYNC_QUEUE].dead_letters(fv.name, int(raw_limit))
    return json_response(
        {"function": fv.short_name, "namespace": fv.namespace, "dead_letters": letters}
    )


@routes.post("/v1/functions/{name}/dead-letters/redrive")
async def redrive_dead_letters(request: web.Request) -> web.Response:
    """Queue dead letters again: all of them (up to 1000), or ``{"request_ids": [...]}``."""
    fv = await _function(request, "invoke")
    queue = request.app[ASYNC_QUEUE]
    raw = await read_limited(request, max_redrive_body_bytes, "the redrive body")
    with redis_errors("the asynchronous queue"):
        if raw.strip():
            ids = _redrive_ids(raw)
        else:
            ids = (await queue.dead_letter_ids(fv.name))[:max_redrive_ids]
        redriven, missing = [], []
        for request_id in ids:
            letter = await queue.dead_letter(fv.name, request_id)
            fields = _redriven(fv, letter) if letter is not None else None
            if fields is not None and await queue.redrive(fv.name, request_id, fields):
                redriven.append(request_id)
            else:
                missing.append(request_id)
    return json_response({"redriven": redriven, "not_found": missing})


def _redrive_ids(raw: bytes) -> list[str]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    ids = body.get("request_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidRequest('send {"request_ids": ["..."]}, or no body to redrive them all')
    if len(ids) > max_redrive_ids:
        raise InvalidRequest(f"redrive at most {max_redrive_ids} dead letters at once")
    return ids


def _redriven(fv: FunctionVersion, letter: dict[str, Any]) -> dict[str, Any]:
    """A dead letter's fresh state: queued now, retries and age start again."""
    return new_event(
        fv, orjson.dumps(letter.get("event")).decode(), time.time(),
        request_id=letter["request_id"], trigger=letter.get("trigger", "async"),
        attempts=int(letter.get("attempts", 0)), errors=[], redriven_at=time.time(),
    )  # fmt: skip


@routes.delete("/v1/functions/{name}/dead-letters/{request_id}")
async def delete_dead_letter(request: web.Request) -> web.Response:
    fv = await _function(request, "invoke")
    request_id = request.match_info["request_id"]
    with redis_errors("the asynchronous queue"):
        removed = REQUEST_ID_RE.match(request_id) and await request.app[
            ASYNC_QUEUE
        ].delete_dead_letter(fv.name, request_id)
    if not removed:
        raise NotFound(f"{fv.short_name} has no dead letter {request_id[:80]!r}")
    return json_response({"deleted": request_id})
