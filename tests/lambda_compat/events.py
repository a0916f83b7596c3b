"""Sample events as ``sam local generate-event`` makes them, by SAM CLI's own generator.

The aws-sam-cli wheel is downloaded (not installed) and only its event library is unpacked:
``samcli/lib/generated_sample_events`` (event-mapping.json, the event templates and
``events.Events``, which renders them with chevron as the CLI does, each tag defaulting to
the mapping's value). It runs in a child interpreter, so nothing of it enters the test process.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.lambda_compat import pins
from tests.lambda_compat.sources import cached, unpacked_wheel, vendored

SAM_MEMBERS = (
    "samcli/__init__.py",
    "samcli/lib/__init__.py",
    "samcli/lib/utils/__init__.py",
    "samcli/lib/utils/hash.py",
    "samcli/lib/generated_sample_events/",
    "samcli/lib/init/templates/cookiecutter-aws-sam-hello-python/",
)
# What the CLI's command does: each tag is a click option (--dns-suffix arrives as
# dns_suffix) whose default is the mapping's; all of them reach Events.generate_event.
GENERATE = (
    "import json, sys\n"
    "from samcli.lib.generated_sample_events.events import Events\n"
    "service, kind, given = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])\n"
    "events = Events()\n"
    "tags = events.event_mapping[service][kind]['tags']\n"
    "values = {t.replace('-', '_'): p['default'] for t, p in tags.items()}\n"
    "values.update({t.replace('-', '_'): v for t, v in given.items()})\n"
    "sys.stdout.write(events.generate_event(service, kind, values))\n"
)


def sam_files() -> Path:
    """The unpacked part of the aws-sam-cli wheel: its event library and python template."""
    return unpacked_wheel(pins.SAM_CLI, SAM_MEMBERS)


def generate_event(service: str, kind: str, **values: str) -> dict[str, Any]:
    """``sam local generate-event SERVICE KIND --tag value ...``, as a dict.

    Tags are the CLI's option names (``bucket``, ``key``, ``body``, ``method`` ...); those not
    given take the defaults of SAM's event-mapping.json, as the CLI's options do.
    """
    spec = [pins.SAM_CLI, pins.CHEVRON, service, kind, json.dumps(values, sort_keys=True)]

    def render(folder: Path) -> None:
        path = f"{sam_files()}:{vendored([pins.CHEVRON])}"
        done = subprocess.run(
            [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = {path.split(':')!r}\n"
             + GENERATE, service, kind, json.dumps(values)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"SAM's generator failed for {service} {kind}: {done.stderr}")
        (folder / "event.json").write_text(done.stdout)

    return json.loads((cached("event", spec, render) / "event.json").read_text())


async def sam_event(service: str, kind: str, **values: str) -> dict[str, Any]:
    """``generate_event`` from an async test: the first call of an event runs SAM's
    generator in a child process, which must not stall the loop the stack serves on."""
    return await asyncio.to_thread(generate_event, service, kind, **values)
