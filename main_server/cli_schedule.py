"""The ``hotpool schedule`` commands (add, ls, rm): a function's schedules."""

from __future__ import annotations

import argparse
import json
import urllib.parse
from pathlib import Path
from typing import Any

from hotpool.main_server.cli_client import CliError, _check, _print, _request


def _path(args: argparse.Namespace, schedule: str | None = None) -> str:
    path = f"/v1/functions/{urllib.parse.quote(args.name, safe='')}/schedules"
    if schedule is not None:
        path += f"/{urllib.parse.quote(schedule, safe='')}"
    if args.namespace:
        path += f"?{urllib.parse.urlencode({'namespace': args.namespace})}"
    return path


def _event(raw: str) -> Any:
    """``--event``: JSON text, or ``@file`` holding it."""
    if raw.startswith("@"):
        try:
            raw = Path(raw[1:]).read_text()
        except OSError as exc:
            raise CliError(f"--event {raw}: cannot read the file ({exc.strerror})") from None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise CliError(f"--event is not valid JSON: {exc}") from None


def cmd_schedule_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"expression": args.expression, "enabled": not args.disabled}
    if args.timezone:
        body["timezone"] = args.timezone
    if args.event is not None:
        body["event"] = _event(args.event)
    status, _, answer = _request(
        "PUT", _path(args, args.schedule), json.dumps(body).encode(),
        content_type="application/json",
    )  # fmt: skip
    _print(_check(status, answer))
    return 0


def cmd_schedule_ls(args: argparse.Namespace) -> int:
    status, _, answer = _request("GET", _path(args))
    schedules = _check(status, answer)["schedules"]
    if not schedules:
        print(f"{args.name} has no schedules")
    for s in schedules:
        state = (s["next_fires"] or ["-"])[0] if s["enabled"] else "disabled"
        print(f"{s['name']:<24} {s['expression']:<32} {s['timezone']:<20} {state}")
    return 0


def cmd_schedule_rm(args: argparse.Namespace) -> int:
    status, _, answer = _request("DELETE", _path(args, args.schedule))
    _check(status, answer)
    print(f"deleted schedule {args.schedule} of {args.name}")
    return 0


def add_schedule_commands(sub: argparse._SubParsersAction) -> None:
    """``hotpool schedule add|ls|rm``."""
    schedule = sub.add_parser("schedule", help="schedules: invoke a function at set times")
    schedule_sub = schedule.add_subparsers(dest="schedule_command", required=True)
    p = schedule_sub.add_parser("add", help="add (or replace) a schedule of a function")
    p.add_argument("name", help="the function")
    p.add_argument("schedule", help="the schedule's name")
    p.add_argument(
        "expression",
        help="rate(5 minutes), cron(0 12 * * ? *) (EventBridge), '0 12 * * *' (Unix cron) "
        "or at(2026-12-31T23:59:00)",
    )
    p.add_argument("--timezone", help="IANA time zone of cron and at() times (default UTC)")
    p.add_argument(
        "--event", metavar="JSON|@FILE",
        help="a fixed event (default: EventBridge's Scheduled Event)",
    )  # fmt: skip
    p.add_argument("--disabled", action="store_true", help="save it without firing it")
    p.add_argument("--namespace", help="namespace (default: the key's first)")
    p.set_defaults(func=cmd_schedule_add)
    p = schedule_sub.add_parser("ls", help="list a function's schedules and their next fire")
    p.add_argument("name", help="the function")
    p.add_argument("--namespace", help="namespace (default: the key's first)")
    p.set_defaults(func=cmd_schedule_ls)
    p = schedule_sub.add_parser("rm", help="delete a schedule")
    p.add_argument("name", help="the function")
    p.add_argument("schedule", help="the schedule's name")
    p.add_argument("--namespace", help="namespace (default: the key's first)")
    p.set_defaults(func=cmd_schedule_rm)
