import asyncio
import time


def dispatch(event, context):
    return globals()[event["mode"]](event)


def plain(event):
    return {"ok": True}


def three(event):
    print("making three")
    yield b"one"
    yield ""  # empty: skipped
    yield "tw\u00f6"
    yield {"n": 3}


def one(event):
    yield "1"


def empty(event):
    yield from ()


def big(event):
    yield bytes(range(256)) * 800  # 200 KiB


def web(event):
    def body():
        yield "<p>"
        yield "hi</p>"

    return {"statusCode": 201, "headers": {"Content-Type": "text/html"}, "body": body()}


def fails(event):
    yield "a"
    yield "b"
    raise ValueError("broke after two")


def unencodable(event):
    yield "fine"
    yield {1, 2}


async def async_three(event):
    for n in range(3):
        await asyncio.sleep(0)
        yield f"item {n}"


def mark(event, text):
    if "path" not in event:
        return
    with open(event["path"], "a") as f:
        f.write(text + " ")


def slow_sync(event):
    try:
        yield "first"
        mark(event, "waiting")
        time.sleep(0.3)
        yield "second"
        time.sleep(0.3)
        yield "third"
    except GeneratorExit:
        mark(event, "GeneratorExit")
        raise
    finally:
        mark(event, "finally")


async def slow_async(event):
    try:
        yield "first"
        mark(event, "waiting")
        await asyncio.sleep(10)
        yield "second"
    except asyncio.CancelledError:
        mark(event, "CancelledError")
        raise
    finally:
        print("closed")
        mark(event, "finally")


def counted(event):
    for n in range(200):
        with open(event["path"], "w") as f:
            f.write(str(n + 1))
        yield b"x" * 65536


def forever(event):
    while True:
        yield "tick"
        time.sleep(0.05)


async def async_forever(event):
    while True:
        yield "tick"
        await asyncio.sleep(10)


def chatty(event):
    print("x" * 4_000_000)  # the summary carries it: megabytes
    yield "done"
