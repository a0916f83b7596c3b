"""The packages the Python runtime provides to every function, as Lambda's provides boto3.

The Docker runtime image carries them (deploy/build-images.sh installs them into
/var/runtime/provided). The process backend runs the bootstrap on the Manager's own
interpreter without site-packages (``-I -S``), so it gets a folder of links to the
Manager's copies instead; the bootstrap puts either folder last on sys.path, behind the
function's code and layers, so a function shipping its own boto3 gets its own.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

# boto3 and what it imports, by import name (python-dateutil is ``dateutil``)
PROVIDED_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")


def link_provided(folder: Path) -> list[str]:
    """Fill ``folder`` with a link to each of PROVIDED_PACKAGES this interpreter can import
    (the folder is made afresh); return the names linked. Nothing is imported."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    linked = []
    for name in PROVIDED_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin is None:
            continue
        locations = spec.submodule_search_locations
        target = Path(locations[0]) if locations else Path(spec.origin)
        try:
            (folder / target.name).symlink_to(target)
        except OSError as exc:  # degrade: functions then need their own copy
            log.warning("cannot provide %s to functions: %s", name, exc)
            continue
        linked.append(name)
    if "boto3" not in linked:
        log.warning("boto3 is not installed with the Manager: functions must ship their own")
    return linked
