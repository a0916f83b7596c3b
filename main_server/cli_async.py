"""The CLI's asynchronous invocations: ``hotpool invoke --async``, ``hotpool status``,
``hotpool dead-letters``, and the deploy flags of the asynchronous settings."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from datetime import UTC, datetime

from hotpool.main_server.cli_client import CliError, _check, _print, _request

# the function settings of asynchronous calls; each is a deploy flag of the same name
SETTINGS = ("async_retries", "max_event_age_s", "on_success", "on_failure")


def add_async_settings(deploy: argparse.ArgumentParser) -> None:
    """``hotpool deploy``'s flags of the asynchronous settings."""
    deploy.add_argument(
        "--async-retries", type=int, metavar="N", help="retries of a failed async event, 0-2 (2)"
    )
    deploy.add_argument(
        "--max-event-age-s", type=int, metavar="S", help="oldest an async event runs, 60-21600"
    )
    deploy.add_argument("--on-success", metavar="FN", help="function that gets each success")
    deploy.add_argument("--on-failure", metavar="FN", help="function that gets each failure")


def async_settings(args: argparse.Namespace) -> dict[str, str]:
    """The deploy parameters the asynchronous flags set."""
    return {name: str(getattr(args, name)) for name in SETTINGS if getattr(args, name) is not None}


def invoke_async(args: argparse.Namespace, event: bytes) -> int:
    """Queue ``event`` for the function and print its request id and status URL."""
    headers = {"X-Hotpool-Invocation-Type": "Event"}
    if args.idempotency_key is not None:
        headers["Idempotency-Key"] = args.idempotency_key
    status, answer_headers, body = _request(
        "POST", f"/v1/functions/{urllib.parse.quote(args.name)}/invoke", event,
        content_type="application/json", headers=headers,
    )  # fmt: skip
    accepted = _check(status, body)
    if answer_headers.get("X-Hotpool-Idempotent-Replay") == "true":
        print(
            "hotpool: this Idempotency-Key was used before: nothing was queued, the id is the "
            "first request's",
            file=sys.stderr,
        )
    _print(accepted)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    request_id = urllib.parse.quote(args.request_id, safe="")
    status, _, body = _request("GET", f"/v1/invocations/{request_id}")
    _print(_check(status, body))
    return 0


def _function_path(args: argparse.Namespace, tail: str = "", **params: object) -> str:
    if args.namespace:
        params["namespace"] = args.namespace
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    return f"/v1/functions/{urllib.parse.quote(args.name)}/dead-letters{tail}{query}"


def cmd_dead_letters(args: argparse.Namespace) -> int:
    if args.ids and not args.redrive:
        raise CliError("--id names dead letters to redrive: use it with --redrive")
    if args.redrive:
        return _redrive(args)
    if args.delete is not None:
        path = _function_path(args, f"/{urllib.parse.quote(args.delete, safe='')}")
        status, _, body = _request("DELETE", path)
        _print(_check(status, body))
        return 0
    status, _, body = _request("GET", _function_path(args, limit=args.limit))
    letters = _check(status, body)["dead_letters"]
    if args.json:
        _print(letters)
        return 0
    if not letters:
        print(f"{args.name} has no dead letters")
    for letter in letters:
        errors = letter.get("errors") or [{}]
        last = errors[-1]
        print(
            f"{letter['request_id']}  {letter['status']:<7}  {letter['reason']}  "
            f"{letter['attempts']} attempt(s)  accepted {_when(letter['accepted_at'])}  "
            f"{last.get('type', '')}: {last.get('message', '')}"
        )
    return 0


def _redrive(args: argparse.Namespace) -> int:
    """Queue dead letters again: ``--id`` ones, or all; exit 1 if a named one is not there."""
    body = json.dumps({"request_ids": args.ids}).encode() if args.ids else None
    status, _, answer = _request(
        "POST", _function_path(args, "/redrive"), body,
        content_type="application/json" if body else "",
    )  # fmt: skip
    result = _check(status, answer)
    _print(result)
    if result["not_found"]:
        print(
            f"hotpool: {args.name} has no dead letter {', '.join(result['not_found'])}",
            file=sys.stderr,
        )
        return 1
    return 0


def _when(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def add_async_commands(sub: argparse._SubParsersAction) -> None:
    """``hotpool status`` and ``hotpool dead-letters``."""
    p = sub.add_parser("status", help="an asynchronous invocation's status (JSON)")
    p.add_argument("request_id", help="the request id 'hotpool invoke --async' printed")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "dead-letters", help="a function's failed or expired async events; redrive, delete"
    )
    p.add_argument("name")
    p.add_argument("--namespace", help="namespace (default: the key's first)")
    action = p.add_mutually_exclusive_group()
    action.add_argument(
        "--redrive", action="store_true", help="queue them again: all, or the --id ones"
    )
    action.add_argument("--delete", metavar="ID", help="delete one dead letter")
    p.add_argument(
        "--id", dest="ids", action="append", metavar="ID", help="with --redrive: this one (repeat)"
    )
    p.add_argument("--limit", type=int, default=100, help="list at most this many (100)")
    p.add_argument("--json", action="store_true", help="print the raw dead letters")
    p.set_defaults(func=cmd_dead_letters)
