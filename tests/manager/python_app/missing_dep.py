import no_such_package  # noqa: F401


def handler(event, context):
    return 1
