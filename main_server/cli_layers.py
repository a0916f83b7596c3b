"""The ``hotpool layer`` commands (publish, ls, rm) and how a deploy builds its package."""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path

from hotpool.main_server.cli_client import CliError, _check, _print, _request


def package_of(path: Path, *, build: bool, prefix: str = "", runtime: str = "python") -> bytes:
    """The zip to upload for ``path``: a zip file as it is, or a directory zipped with its
    ``requirements.txt`` vendored, or for Node.js its package.json's production dependencies
    installed by npm (unless not ``build``)."""
    from hotpool.main_server.npm_build import build_node_package
    from hotpool.main_server.vendoring import VendoringError, build_package

    if path.is_file():
        return path.read_bytes()
    if not path.is_dir():
        raise CliError(f"{path} is neither a directory nor a zip file")
    try:
        if runtime == "nodejs":
            return build_node_package(path, build=build)
        return build_package(path, build=build, prefix=prefix)
    except VendoringError as exc:
        raise CliError(str(exc)) from None


def _query(args: argparse.Namespace, **params: str) -> str:
    if getattr(args, "namespace", None):
        params["namespace"] = args.namespace
    return f"?{urllib.parse.urlencode(params)}" if params else ""


def cmd_layer_publish(args: argparse.Namespace) -> int:
    path = Path(args.path)
    # a layer's Python code lives under python/ at its root, as on Lambda
    data = package_of(path, build=not args.no_build, prefix="python")
    if (
        path.is_dir()
        and not (path / "python").is_dir()
        and not (path / "requirements.txt").is_file()
    ):
        print(
            f"hotpool: warning: {path} has no python/ folder; its files are unpacked at /opt "
            "but none of them is on sys.path (put modules in python/)",
            file=sys.stderr,
        )
    name = args.name or path.stem
    params = {"description": args.description} if args.description else {}
    status, _, body = _request(
        "PUT", f"/v1/layers/{urllib.parse.quote(name)}{_query(args, **params)}", data,
        content_type="application/zip",
    )  # fmt: skip
    _print(_check(status, body))
    return 0


def cmd_layer_ls(args: argparse.Namespace) -> int:
    if args.name:
        path = f"/v1/layers/{urllib.parse.quote(args.name)}{_query(args)}"
        status, _, body = _request("GET", path)
        layers = _check(status, body)["versions"]
    else:
        status, _, body = _request("GET", f"/v1/layers{_query(args)}")
        layers = _check(status, body)["layers"]
    if not layers:
        print("no layers published")
    for layer in layers:
        print(
            f"{layer['name']}:{layer['version']:<6} {layer['size']:>10} bytes  "
            f"{layer['created_at']}  {layer['description']}"
        )
    return 0


def cmd_layer_rm(args: argparse.Namespace) -> int:
    name, version = urllib.parse.quote(args.name), urllib.parse.quote(args.version)
    status, _, body = _request("DELETE", f"/v1/layers/{name}/versions/{version}{_query(args)}")
    _print(_check(status, body))
    return 0


def add_layer_commands(sub: argparse._SubParsersAction) -> None:
    """``hotpool layer publish|ls|rm``."""
    layer = sub.add_parser("layer", help="layers: code and dependencies shared by functions")
    layer_sub = layer.add_subparsers(dest="layer_command", required=True)
    p = layer_sub.add_parser("publish", help="publish a directory or zip as a new layer version")
    p.add_argument("path", help="directory (its python/ folder goes on sys.path), or a zip")
    p.add_argument("--name", help="layer name (default: the directory name)")
    p.add_argument("--description", help="what the layer holds")
    p.add_argument(
        "--no-build", action="store_true",
        help="do not vendor the directory's requirements.txt into python/",
    )  # fmt: skip
    p.add_argument("--namespace", help="namespace (default: the key's first)")
    p.set_defaults(func=cmd_layer_publish)
    p = layer_sub.add_parser("ls", help="list layers, or one layer's versions")
    p.add_argument("name", nargs="?")
    p.add_argument("--namespace", help="namespace (default: the key's first)")
    p.set_defaults(func=cmd_layer_ls)
    p = layer_sub.add_parser("rm", help="delete a layer version (functions using it keep it)")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--namespace", help="namespace (default: the key's first)")
    p.set_defaults(func=cmd_layer_rm)
