import sys

HEAVY = (
    "asyncio",
    "http.server",
    "email",
    "typing",
    "inspect",
    "dataclasses",
    "argparse",
    "logging",  # the runtime's log handler waits for the function to import it
)


def heavy_modules(event, context):
    return [name for name in HEAVY if name in sys.modules]
