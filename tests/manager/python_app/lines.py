import logging


def log_lines(event, context):
    for level in ("debug", "info", "warning"):
        getattr(logging.getLogger("lines"), level)(f"{level} line")
