"""Lambda layers: unpacking them at the opt directory and putting them on sys.path.

Each layer's zip is unpacked, in the function's order, into one opt directory (``/opt`` in the
runtime image, a symlink into the tmpfs ``/tmp``; a per-container folder on the process
backend), later layers overwriting earlier files, as Lambda does. Their Python folders go on
sys.path right after the code directory, in Lambda's order, so the function's own modules win.
"""

from __future__ import annotations

import os
import sys

from .errors import RequestError
from .loader import unpack_code

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing alone costs every container half a MiB
    from typing import Any


def python_paths(opt_dir: str) -> list[str]:
    """The folders of the opt directory Lambda's Python runtime puts on sys.path, in order."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return [os.path.join(opt_dir, "python", "lib", version, "site-packages"),
            os.path.join(opt_dir, "python")]  # fmt: skip


def install_layers(
    request: dict[str, Any], opt_dir: str, code_dir: str, *, keep_modes: bool = False
) -> None:
    """Unpack the /init request's ``layers_zip_b64`` (a list, maybe absent) into ``opt_dir``
    and put their Python folders on sys.path after ``code_dir``. Without an ``opt_dir`` (the
    bootstrap's --opt-dir), layers are refused rather than written anywhere else."""
    layers = request.get("layers_zip_b64", [])
    if not isinstance(layers, list) or not all(isinstance(layer, str) for layer in layers):
        raise RequestError(400, "BadRequest", "field 'layers_zip_b64' must be a list of strings")
    if not layers:
        return
    if not opt_dir:
        raise RequestError(400, "BadRequest", "this container has no opt directory for layers")
    # the real path, so every entry is checked against where its bytes will land
    root = os.path.realpath(opt_dir)
    for number, layer in enumerate(layers, 1):
        try:
            unpack_code(layer, root, keep_modes=keep_modes)
        except RequestError as exc:
            raise RequestError(400, "InvalidLayerZip", f"layer {number}: {exc}") from exc
        except OSError as exc:  # e.g. /tmp is full, or a file where an earlier layer has a folder
            raise RequestError(
                422, "LayerUnpackFailed", f"layer {number} could not be unpacked: {exc}",
                traceback="",
            ) from exc  # fmt: skip
    at = sys.path.index(code_dir) + 1 if code_dir in sys.path else 0
    # as Lambda names them (/opt/python, ...), even where /opt is a symlink
    sys.path[at:at] = [path for path in python_paths(opt_dir) if path not in sys.path]
