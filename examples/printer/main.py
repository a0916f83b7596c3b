"""Writes to stdout and stderr, to show how a function's output is captured."""

import sys


def handler(event, context):
    """Print a few lines to stdout and one to stderr; return how many were printed."""
    lines = int((event or {}).get("lines", 3))
    for i in range(lines):
        print(f"stdout line {i + 1} of {lines}")
    print("a line on stderr", file=sys.stderr)
    return {"printed": lines + 1}
