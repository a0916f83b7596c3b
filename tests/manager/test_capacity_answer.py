"""A full Manager says so in its answer (``full``): Main's cold start reads it to queue for a
release instead of failing (main_server.manager_client), where it once looked for the word
"capacity" in the message."""

from __future__ import annotations

import pytest

from hotpool.shared.errors import NoCapacity, error_from_body
from tests.manager.test_manager_api import _create

pytestmark = pytest.mark.integration


async def test_a_full_manager_answers_no_capacity_marked_full(hotpool_stack):
    stack = await hotpool_stack(capacity_containers=1)
    assert (await _create(stack))[0] == 201

    status, body = await _create(stack)

    error = error_from_body(status, body)
    assert (status, type(error)) == (503, NoCapacity)
    assert error.details == {"full": True}
