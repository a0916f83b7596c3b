"""The Node.js runtime's part of checking an uploaded package: its handler file is there."""

from __future__ import annotations

from hotpool.shared.errors import InvalidPackage

# the names Lambda's Node runtime tries for the module of `file.export`, in its order
NODE_EXTENSIONS = ("", ".js", ".mjs", ".cjs")


def check_node_handler(names: list[str], handler: str, wrapper: str | None) -> None:
    """The handler's file is among the zip's ``names`` under one of the names Lambda's Node
    runtime tries, or is a package of that name in node_modules; raise InvalidPackage saying
    what to fix otherwise. ``wrapper`` is the one folder wrapping every entry, if any. The
    export is not checked: finding it means running the module (the container's /init
    reports Runtime.HandlerNotFound)."""
    folder, _, base = handler.rpartition("/")
    name = base.split(".", 1)[0]
    module = f"{folder}/{name}" if folder else name
    present = set(names)
    package = f"node_modules/{module}/"
    if any(module + ext in present for ext in NODE_EXTENSIONS) or any(
        n.startswith(package) for n in names
    ):
        return
    if wrapper is not None:
        raise InvalidPackage(
            f"handler file {module!r} not found: the zip wraps everything in the folder "
            f"'{wrapper}/'. Zip the folder's contents instead of the folder itself "
            f"(e.g. cd {wrapper} && zip -r ../package.zip .)"
        )
    files = [n for n in names if not n.endswith("/") and not n.startswith("node_modules/")]
    shown = ", ".join(files[:5]) + (", ..." if len(files) > 5 else "")
    raise InvalidPackage(
        f"handler file {module!r} not found: the zip has no {module}.js, {module}.mjs or "
        f"{module}.cjs (entries: {shown})"
    )
