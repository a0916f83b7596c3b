"""A WebSocket function that generates a practice problem and streams its progress.

Deploy it with ``websocket=key`` (or ``public``) and connect to ``/ws/ws_problem``. Send
``{"action": "generateProblem", "topic": "arithmetic", "difficulty": 3}``: the function
answers with one message per step (``{"type": "progress", ...}``) as it works, then one
``{"type": "result", ...}`` message. With ``"via": "connections"`` it posts the same messages
through the ``@connections`` management API instead (as a Lambda behind API Gateway does with
``post_to_connection``), using the endpoint and credential hotpool puts in its environment.

Standard library only.
"""

import json
import os
import random
import time
import urllib.request

STEPS = ("choosing the numbers", "building the expression", "computing the answer", "checking it")
OPERATORS = ("+", "-", "*")


def handler(event, context):
    route = event["requestContext"]["routeKey"]
    if route in ("$connect", "$disconnect"):
        return {"statusCode": 200}
    try:
        request = json.loads(event.get("body") or "{}")
    except ValueError:
        return {"statusCode": 400, "body": json.dumps({"error": "send a JSON object"})}
    if route != "generateProblem":
        return {"statusCode": 400, "body": json.dumps({"error": f"unknown action {route!r}"})}
    messages = generate(request)
    if request.get("via") == "connections":
        connection_id = event["requestContext"]["connectionId"]
        for message in messages:
            post_to_connection(connection_id, message)
        return {"statusCode": 200}
    return {"statusCode": 200, "body": (json.dumps(m) for m in messages)}


def generate(request):
    """The progress messages, then the result, each produced when its step is done."""
    rng = random.Random(request.get("seed"))
    difficulty = max(1, min(int(request.get("difficulty", 2)), 5))
    delay_s = float(request.get("step_delay_s", 0.2))
    numbers = [rng.randint(2, 10**difficulty) for _ in range(difficulty + 1)]
    operators = [rng.choice(OPERATORS) for _ in numbers[1:]]
    for n, step in enumerate(STEPS, 1):
        time.sleep(delay_s)  # the real work of a step
        yield {"type": "progress", "step": n, "of": len(STEPS), "doing": step, "at": time.time()}
    answer = evaluate(numbers, operators)
    text = " ".join(f"{o} {n}" for o, n in zip(["", *operators], numbers, strict=True)).strip()
    yield {
        "type": "result",
        "topic": request.get("topic", "arithmetic"),
        "problem": f"{text} = ?",
        "answer": answer,
        "at": time.time(),
    }


def evaluate(numbers, operators):
    """The value of the expression as it reads: products first, then sums left to right."""
    terms = [numbers[0]]
    for operator, number in zip(operators, numbers[1:], strict=True):
        if operator == "*":
            terms[-1] *= number
        else:
            terms.append(number if operator == "+" else -number)
    return sum(terms)


def post_to_connection(connection_id, message):
    """API Gateway's PostToConnection, on hotpool's @connections endpoint."""
    url = f"{os.environ['HOTPOOL_CONNECTIONS_URL']}/@connections/{connection_id}"
    request = urllib.request.Request(
        url,
        data=json.dumps(message).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {os.environ['HOTPOOL_CONNECTIONS_TOKEN']}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
