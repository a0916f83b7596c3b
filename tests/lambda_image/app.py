"""The handler of the Lambda-style test image: a plain Lambda Python handler, run by AWS's
awslambdaric; nothing in it knows hotpool."""

import os


def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    print("hello from the image")
    return {
        # baked into each build of the image: tells a re-tagged image from the one deployed
        "variant": os.environ.get("IMAGE_VARIANT", ""),
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "uid": os.getuid(),
    }
