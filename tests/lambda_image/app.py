"""The handler of the Lambda-style test image: a plain Lambda Python handler, run by AWS's
awslambdaric; nothing in it knows hotpool."""

import os
import urllib.error
import urllib.request


def probe():
    """What a hostile image function could reach from inside (the security suite's)."""
    try:
        with open("/var/task/written", "w") as f:
            f.write("x")
        root_writable = True
    except OSError:
        root_writable = False
    with open("/proc/self/status") as f:
        status = dict(line.split(":\t", 1) for line in f if ":\t" in line)
    # the relay's hotpool side, in this network namespace: it demands the container secret
    request = urllib.request.Request("http://127.0.0.1:8080/invoke", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            relay_status = resp.status
    except urllib.error.HTTPError as exc:
        relay_status = exc.code
    return {
        "root_writable": root_writable,
        "cap_eff": status["CapEff"].strip(),
        "no_new_privs": status.get("NoNewPrivs", "").strip(),
        "relay_invoke_status": relay_status,
        "secret_in_env": any("SECRET" in name for name in os.environ),
    }


def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    if isinstance(event, dict) and event.get("probe"):
        return probe()
    print("hello from the image")
    return {
        # baked into each build of the image: tells a re-tagged image from the one deployed
        "variant": os.environ.get("IMAGE_VARIANT", ""),
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "uid": os.getuid(),
    }
