"""A WebSocket function's connect and message round trip with the function in a Docker
container (the production backend) instead of a local process."""

from __future__ import annotations

import pytest

from tests.main_server.test_ws_route import (  # noqa: F401  (collected here on Docker)
    test_a_connect_and_message_round_trip,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_backend() -> str:
    return "docker"
