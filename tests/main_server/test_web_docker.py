"""The web route's end-to-end tests of tests/main_server/test_web.py again, with functions
in Docker containers (the production backend) instead of local processes."""

from __future__ import annotations

import pytest

from tests.main_server.test_web import (  # noqa: F401  (collected here on Docker)
    test_a_binary_request_and_response,
    test_a_get_reaches_the_app_as_a_function_url_event,
    test_cookies_headers_and_status_of_the_result,
    test_errors_and_malformed_results_are_a_bare_502,
    test_payload_1_0_for_rest_api_apps,
    test_who_may_call_public_key_and_off,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_backend() -> str:
    return "docker"
