"""The ``hotpool`` command line: run the services, and deploy, invoke and inspect functions
(layers: ``cli_layers``; asynchronous invocations: ``cli_async``; schedules: ``cli_schedule``).

Client commands talk to ``HOTPOOL_URL`` (default http://127.0.0.1:8080) with the standard
library only, so they start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from hotpool.main_server.cli_async import (
    add_async_commands,
    add_async_settings,
    async_settings,
    invoke_async,
)
from hotpool.main_server.cli_client import CliError, _check, _print, _request, multipart
from hotpool.main_server.cli_layers import add_layer_commands, package_of
from hotpool.main_server.cli_schedule import add_schedule_commands
from hotpool.main_server.cli_ws import add_ws_command, add_ws_settings, ws_settings
from hotpool.main_server.cli_ws import invoke as invoke_streamed
from hotpool.shared.errors import HotpoolError
from hotpool.shared.models import HTTP_MODES, HTTP_PAYLOADS, LOG_FORMATS
from hotpool.shared.runtimes import RUNTIMES
from hotpool.shared.settings import Settings, SettingsError


def guess_runtime(path: Path) -> str:
    """nodejs for a folder with a package.json and no Python files at its top; else python
    (a zip, too: say --runtime nodejs for a zipped Node function)."""
    if path.is_dir() and (path / "package.json").is_file():
        if not any(path.glob("*.py")) and not (path / "requirements.txt").is_file():
            return "nodejs"
    return "python"


def cmd_deploy(args: argparse.Namespace) -> int:
    params: dict[str, str]
    if args.image:  # a container image is the code (Docker backend): no folder, no runtime
        if args.path or not args.name:
            raise CliError("--image takes no path and needs --name: deploy --image REF --name N")
        data, params, name = None, {"image": args.image}, args.name
    elif not args.path:
        raise CliError("name a directory or zip to deploy, or a container image with --image")
    else:
        path = Path(args.path)
        runtime = args.runtime or guess_runtime(path)
        # a directory's requirements.txt is vendored into the zip (main_server/vendoring.py),
        # a Node.js one's package.json dependencies installed by npm (main_server/npm_build.py)
        data = package_of(path, build=not args.no_build, runtime=runtime)
        params, name = {"runtime": runtime}, args.name or path.stem
    if args.layer:
        params["layers"] = ",".join(args.layer)
    if args.handler:
        params["handler"] = args.handler
    if args.memory is not None:
        params["memory_mb"] = str(args.memory)
    if args.timeout is not None:
        params["timeout_s"] = str(args.timeout)
    if args.env:
        env = {}
        for item in args.env:
            key, sep, value = item.partition("=")
            if not sep:
                raise CliError(f"--env {item!r} must be KEY=VALUE")
            env[key] = value
        params["env"] = json.dumps(env)
    if args.max_concurrency is not None:
        params["max_concurrency"] = str(args.max_concurrency)
    for setting in ("log_format", "log_level", "http", "http_payload", "cors"):
        if getattr(args, setting) is not None:
            params[setting] = getattr(args, setting)
    params.update(async_settings(args))
    params.update(ws_settings(args))
    query = f"?namespace={urllib.parse.quote(args.namespace)}" if args.namespace else ""
    # multipart, so settings (env secrets included) stay out of URLs and access logs
    form, content_type = multipart(params, data)
    status, _, body = _request(
        "PUT", f"/v1/functions/{urllib.parse.quote(name)}{query}", form, content_type=content_type
    )
    _print(_check(status, body))
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    if args.file:
        event = Path(args.file).read_bytes()
    elif args.data is not None:
        event = args.data.encode()
    else:
        event = b"{}"
    if args.asynchronous:
        return invoke_async(args, event)
    if args.idempotency_key is not None:
        raise CliError("--idempotency-key is for asynchronous calls: add --async")
    return invoke_streamed(args.name, event, args.verbose)


def cmd_ls(args: argparse.Namespace) -> int:
    status, _, body = _request("GET", "/v1/functions")
    functions = _check(status, body)["functions"]
    if not functions:
        print("no functions deployed")
    for fn in functions:
        print(
            f"{fn['name']:<24} v{fn['version']:<4} {fn['runtime']:<8} {fn['handler']:<24} "
            f"{fn['memory_mb']} MB  {fn['timeout_s']:g} s"
        )
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    status, _, body = _request(
        "GET", f"/v1/functions/{urllib.parse.quote(args.name)}/invocations?limit={args.limit}"
    )
    records = _check(status, body)["invocations"]
    if args.json:
        _print(records)
        return 0
    for r in records:
        cold = "cold" if r.get("cold_start") else "warm"
        line = (
            f"{r['request_id']}  v{r['version']}  {cold}  {r.get('status')}  "
            f"{r.get('duration_ms', 0):.1f} ms"
        )
        if r.get("error"):
            line += f"  {r['error'].get('type')}: {r['error'].get('message')}"
        print(line)
        for stream in ("stdout", "stderr"):
            text = (r.get(stream) or "").rstrip()
            if text:
                for out in text.splitlines():
                    print(f"    {stream}: {out}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    status, _, body = _request("DELETE", f"/v1/functions/{urllib.parse.quote(args.name)}")
    _print(_check(status, body))
    return 0


def cmd_images_build(args: argparse.Namespace) -> int:
    """Build the runtime images with deploy/build-images.sh (no registry needed)."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "deploy" / "build-images.sh"
    if not script.exists():
        raise CliError(
            f"{script} is missing; run 'hotpool images build' from a hotpool source checkout"
        )
    env = dict(os.environ)
    if args.force:
        env["FORCE"] = "1"
    return subprocess.call(["bash", str(script)], env=env)


def _settings_for_service(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
        # port 0: any free port, for the Manager too (the ready line names both)
        overrides.setdefault("manager_port", args.port + 1 if args.port else 0)
    return Settings.from_env(**overrides)


def cmd_dev(args: argparse.Namespace) -> int:
    from hotpool.main_server.serve import run, run_dev

    run(run_dev, _settings_for_service(args))
    return 0


def cmd_main(args: argparse.Namespace) -> int:
    from hotpool.main_server.serve import run, run_main

    run(run_main, _settings_for_service(args))
    return 0


def cmd_manager(args: argparse.Namespace) -> int:
    from hotpool.main_server.serve import run, run_manager

    settings = Settings.from_env()
    if args.port is not None:
        settings = settings.replace(manager_port=args.port)
    run(run_manager, settings)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    import asyncio

    from hotpool.shared.schema import migrate

    url = args.database_url
    if not url:
        settings = Settings.from_env()
        url = settings.effective_database_url
        if not settings.database_url:  # the embedded SQLite file: its directory may not exist yet
            settings.state_dir.mkdir(parents=True, exist_ok=True)
    revision = asyncio.run(migrate(url))
    print(f"database at revision {revision}")
    return 0


def cmd_admin_create_key(args: argparse.Namespace) -> int:
    """Create an API key straight in the metadata database (production bootstrap)."""
    import asyncio

    from hotpool.shared.keystore import SqlKeyStore
    from hotpool.shared.models import qualify, validate_name
    from hotpool.shared.stores import open_metadata

    namespaces = [ns.strip() for ns in args.namespace.split(",") if ns.strip()]
    function = None
    if args.function:
        if len(namespaces) != 1:
            raise CliError("--function needs exactly one --namespace")
        function = qualify(namespaces[0], validate_name(args.function))

    async def create() -> str:
        metadata = await open_metadata(Settings.from_env())
        try:
            key, _ = await SqlKeyStore(metadata).create(
                namespaces=namespaces,
                scopes="invoke" if function else args.scopes,
                function=function,
                description=args.description,
                user=args.user,
            )
        finally:
            await metadata.close()
        return key.token

    print(asyncio.run(create()))
    return 0


def cmd_admin_revoke_key(args: argparse.Namespace) -> int:
    import asyncio

    from hotpool.shared.keystore import SqlKeyStore
    from hotpool.shared.stores import open_metadata

    async def revoke() -> None:
        metadata = await open_metadata(Settings.from_env())
        try:
            await SqlKeyStore(metadata).revoke(args.key_id)
        finally:
            await metadata.close()

    asyncio.run(revoke())
    print(f"revoked {args.key_id} (every Main replica stops accepting it within seconds)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotpool", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dev", help="run Main and Manager in one process (embedded default)")
    p.add_argument(
        "--port", type=int, help="Main's port (default 8080; Manager uses port+1; 0: any free)"
    )
    p.set_defaults(func=cmd_dev)
    p = sub.add_parser("main", help="run the Main server (configured by HOTPOOL_* variables)")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_main)
    p = sub.add_parser("manager", help="run a Manager (configured by HOTPOOL_* variables)")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_manager)

    admin = sub.add_parser("admin", help="API keys, straight in the metadata database")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    p = admin_sub.add_parser("create-key", help="create an API key and print it (once)")
    p.add_argument("--namespace", required=True, help="namespace(s), comma-separated, or '*'")
    p.add_argument("--scopes", default="deploy,invoke,read", help="admin,deploy,invoke,read")
    p.add_argument("--function", help="a key that may only invoke this function")
    p.add_argument("--description", default="", help="what the key is for")
    p.add_argument("--user", help="the user the key belongs to")
    p.set_defaults(func=cmd_admin_create_key)
    p = admin_sub.add_parser("revoke-key", help="revoke an API key by its id")
    p.add_argument("key_id")
    p.set_defaults(func=cmd_admin_revoke_key)

    # listed for --help; main() hands `hotpool bench ...` to the suite's own parser
    sub.add_parser("bench", help="run the benchmark suite (hotpool bench --help)")

    p = sub.add_parser("migrate", help="bring the metadata database to the latest schema")
    p.add_argument(
        "--database-url",
        help="the database to migrate (default HOTPOOL_DATABASE_URL, else the embedded SQLite)",
    )
    p.set_defaults(func=cmd_migrate)

    images = sub.add_parser("images", help="runtime images for the Docker backend")
    images_sub = images.add_subparsers(dest="images_command", required=True)
    p = images_sub.add_parser("build", help="build the runtime images (idempotent)")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.set_defaults(func=cmd_images_build)

    p = sub.add_parser("deploy", help="deploy a directory or zip as a new function version")
    p.add_argument("path", nargs="?", help="directory holding main.py (nodejs: index.js), or a zip")
    p.add_argument(
        "--image",
        metavar="REF",
        help="deploy a container image instead (Docker backend; needs --name)",
    )
    p.add_argument("--name", help="function name (default: the directory name)")
    p.add_argument("--runtime", choices=RUNTIMES,
                   help="python or nodejs (default: nodejs for a folder with a package.json "
                   "and no Python files at its top, else python)")  # fmt: skip
    p.add_argument("--handler",
                   help="module.function (default main.handler; nodejs: file.export, "
                   "default index.handler)")  # fmt: skip
    p.add_argument("--memory", type=int, help="memory in MB (default 128)")
    p.add_argument("--timeout", type=float, help="timeout in seconds (default 30)")
    p.add_argument("--env", action="append", metavar="K=V", help="environment variable")
    p.add_argument("--max-concurrency", type=int, help="most containers (default 100)")
    p.add_argument("--namespace", help="namespace (default: the key's first)")
    p.add_argument("--layer", action="append", metavar="NAME:VERSION", help="a layer (repeat)")
    p.add_argument("--no-build", action="store_true",
                   help="do not vendor requirements.txt (nodejs: do not run npm)")  # fmt: skip
    p.add_argument("--log-format", choices=LOG_FORMATS, help="runtime log lines (default text)")
    p.add_argument("--log-level", help="the root logger's level: DEBUG, INFO, WARN, ERROR, ...")
    p.add_argument("--http", choices=HTTP_MODES, help="the /fn/ web route (default key)")
    p.add_argument("--http-payload", choices=HTTP_PAYLOADS, help="web event format (2.0)")
    p.add_argument("--cors", metavar="JSON", help='e.g. {"allow_origins": ["*"]}')
    add_async_settings(p)
    add_ws_settings(p)
    p.set_defaults(func=cmd_deploy)
    add_layer_commands(sub)

    p = sub.add_parser("invoke", help="call a function and print its result")
    p.add_argument("name")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--data", help="the event as JSON text")
    group.add_argument("--file", help="a file holding the event JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print hotpool headers")
    p.add_argument("--async", dest="asynchronous", action="store_true",
                   help="queue the event; print its request id and status URL")  # fmt: skip
    p.add_argument("--idempotency-key", metavar="K", help="with --async: queue K only once")
    p.set_defaults(func=cmd_invoke)
    add_async_commands(sub)
    add_ws_command(sub)
    add_schedule_commands(sub)

    p = sub.add_parser("ls", help="list functions")
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("logs", help="show a function's latest invocations")
    p.add_argument("name")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print the raw records")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("rm", help="delete a function and its warm containers")
    p.add_argument("name")
    p.set_defaults(func=cmd_rm)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from hotpool.benchmarks.suite import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, SettingsError, HotpoolError) as exc:
        print(f"hotpool: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
