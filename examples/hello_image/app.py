"""A plain Lambda handler, run in its image by AWS's runtime interface client."""


def handler(event, context):
    name = (event or {}).get("name", "world")
    print(f"greeting {name}")
    return {"message": f"Hello, {name}!", "requestId": context.aws_request_id}
