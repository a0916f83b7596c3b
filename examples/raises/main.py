"""Always fails, to show how a user-code error reaches the caller."""


def handler(event, context):
    """Raise a ValueError that names the event it was given."""
    raise ValueError(f"this function always fails; it was invoked with event {event!r}")
