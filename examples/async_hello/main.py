"""An ``async def`` handler: the runtime awaits it on its event loop."""

import asyncio


async def handler(event, context):
    """Await briefly, then greet the caller and echo the request id."""
    await asyncio.sleep(0.01)
    name = (event or {}).get("name", "world")
    return {"message": f"Hello, {name}!", "request_id": context.aws_request_id}
