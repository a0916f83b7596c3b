"""The ``examples/ws_problem`` function on a real stack (process backend), reached with the
independent ``websockets`` client: progress messages one by one and then the result, the same
through the ``@connections`` API from inside the function, and an unknown action's 400 body."""

from __future__ import annotations

import ast
import asyncio
import itertools
import json
import operator
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.helpers import free_port, make_zip
from tests.main_server.ws_clients import deploy, ws_url

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ws_problem" / "main.py"
STEP_DELAY_S = 0.2
# seed 3, difficulty 3 gives "245 - 608 * 559 - 135": a product after a difference, so an
# answer computed left to right instead of * first is caught
REQUEST = {"action": "generateProblem", "difficulty": 3, "step_delay_s": STEP_DELAY_S, "seed": 3}
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def evaluate(problem: str) -> int:
    """The value of ``problem`` ("a + b * c = ?"): integers, + - * only, as Python reads it."""
    expression = problem.removesuffix(" = ?")

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        raise ValueError(f"not integer arithmetic: {ast.dump(node)}")

    return value(ast.parse(expression, mode="eval").body)


async def _problem_function(stack: Any) -> dict[str, str]:
    """Deploy the example (websocket=key) and return the headers of a key that may connect."""
    await deploy(stack, "ws_problem", make_zip({"main.py": EXAMPLE.read_bytes()}))
    return {"Authorization": f"Bearer {await stack.key('default', 'invoke')}"}


async def _converse(stack: Any, headers: dict[str, str], request: dict, n: int) -> list:
    """Send ``request`` and return the first ``n`` answers, each as (receive time, message)."""
    async with connect(ws_url(stack, "/ws/ws_problem"), additional_headers=headers) as ws:
        await ws.send(json.dumps(request))
        got = []
        for _ in range(n):
            message = await asyncio.wait_for(ws.recv(), 15)
            got.append((time.time(), json.loads(message)))
        return got


def _assert_progress_then_result(got: list) -> None:
    received = [at for at, _ in got]
    messages = [message for _, message in got]
    progress, result = messages[:4], messages[4]
    assert [m["type"] for m in messages] == ["progress"] * 4 + ["result"]
    assert [m["step"] for m in progress] == [1, 2, 3, 4]
    assert all(m["of"] == 4 for m in progress)
    # one by one as each step is done, not all at once at the end
    gaps = [later - earlier for earlier, later in itertools.pairwise(received[:4])]
    assert all(gap >= STEP_DELAY_S * 0.75 for gap in gaps), gaps
    assert received[0] < result["at"], "the first step arrived only once the result was made"
    assert "*" in result["problem"] and "-" in result["problem"]
    assert result["answer"] == evaluate(result["problem"]), result


@pytest.fixture
async def problem_stack(hotpool_stack):
    # Main on a known port: HOTPOOL_CONNECTIONS_URL in the function's environment reaches it
    stack = await hotpool_stack(port=free_port())
    return stack, await _problem_function(stack)


def test_the_evaluator_reads_products_first():
    assert evaluate("245 - 608 * 559 - 135 = ?") == 245 - 608 * 559 - 135
    with pytest.raises(ValueError, match="not integer arithmetic"):
        evaluate("2 ** 3 = ?")


async def test_progress_arrives_step_by_step_then_the_correct_result(problem_stack):
    stack, headers = problem_stack

    got = await _converse(stack, headers, REQUEST, 5)

    _assert_progress_then_result(got)
    assert got[4][1]["topic"] == "arithmetic"


async def test_the_same_messages_come_through_the_connections_api(problem_stack):
    stack, headers = problem_stack

    got = await _converse(stack, headers, {**REQUEST, "via": "connections"}, 5)

    _assert_progress_then_result(got)


async def test_an_unknown_action_answers_the_400_body(problem_stack):
    stack, headers = problem_stack

    (_, answer), (_, default) = [
        (await _converse(stack, headers, request, 1))[0]
        for request in ({"action": "solveProblem"}, {"difficulty": 3})
    ]

    assert answer == {"error": "unknown action 'solveProblem'"}
    assert default == {"error": "unknown action '$default'"}
