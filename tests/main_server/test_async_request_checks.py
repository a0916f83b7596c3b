"""What makes an invoke asynchronous: every invocation-type input is checked, none ignored."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from hotpool.main_server.async_api import wants_async
from hotpool.shared.errors import InvalidRequest

pytestmark = pytest.mark.unit


def _request(query: str = "", **headers: str) -> object:
    names = {"hotpool": "X-Hotpool-Invocation-Type", "amz": "X-Amz-Invocation-Type"}
    return make_mocked_request(
        "POST", f"/v1/functions/f/invoke{query}", headers={names[k]: v for k, v in headers.items()}
    )


@pytest.mark.parametrize(
    ("query", "headers", "expected"),
    [
        ("", {}, False),
        ("", {"hotpool": "Event"}, True),
        ("", {"amz": "event"}, True),
        ("", {"hotpool": "RequestResponse"}, False),
        ("?async=true", {}, True),
        ("?async=1", {"hotpool": "RequestResponse"}, True),
        ("?async=false", {"amz": "Event"}, True),
        ("?async=0", {}, False),
    ],
)
def test_an_event_header_or_async_true_asks_for_an_asynchronous_call(query, headers, expected):
    assert wants_async(_request(query, **headers)) is expected


@pytest.mark.parametrize(
    ("query", "headers", "named"),
    [
        ("", {"hotpool": "DryRun"}, "X-Hotpool-Invocation-Type"),
        # a bad value is refused even when another input already asked for an async call
        ("?async=maybe", {"amz": "Event"}, "async must be true or false"),
        ("", {"hotpool": "Event", "amz": "Later"}, "X-Amz-Invocation-Type"),
        ("?async=yes", {}, "async must be true or false"),
    ],
)
def test_a_bad_invocation_type_is_refused_whatever_else_the_request_says(query, headers, named):
    with pytest.raises(InvalidRequest, match=named):
        wants_async(_request(query, **headers))
