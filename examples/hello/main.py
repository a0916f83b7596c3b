"""Greets the caller: the smallest useful hotpool function."""


def handler(event, context):
    """Return a greeting for ``event["name"]``, or for the world."""
    event = event or {}
    return {"message": f"Hello, {event.get('name', 'world')}!"}
