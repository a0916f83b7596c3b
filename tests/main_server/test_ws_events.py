"""The pure parts of the WebSocket trigger: API Gateway's events, route selection, what a
result sends back, and the per-connection limits (rate, idle time, lifetime)."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpool.main_server import ws_events
from hotpool.main_server.ws_events import NoReply, Origin, reply_of, route_key, selection_path
from hotpool.main_server.ws_limits import Deadlines, TokenBucket
from hotpool.shared.errors import InvalidRequest
from hotpool.shared.models import FunctionConfig

pytestmark = pytest.mark.unit

ORIGIN = Origin("AAAAAAAAAAAAAAAA", "team.chat", "example.test:8000", "10.0.0.1", "ua/1")
ACTION = selection_path("$request.body.action")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"action": "join"}', "join"),
        ('  {"action": "join"}', "join"),
        ('{"action": ""}', "$default"),
        ('{"action": 5}', "$default"),
        ('{"action": null}', "$default"),
        ('{"action": {"x": 1}}', "$default"),
        ('{"other": "x"}', "$default"),
        ('["action"]', "$default"),
        ("action", "$default"),
        ('{"action": ', "$default"),
        (b'{"action": "join"}', "$default"),  # a binary message is never parsed
    ],
)
def test_the_default_route_selection(body, expected):
    assert route_key(ACTION, body) == expected


@pytest.mark.parametrize("chosen", ["$connect", "$disconnect", "$default", "$anything"])
def test_a_client_cannot_choose_a_reserved_route(chosen):
    path = selection_path("$request.body.action")
    assert route_key(path, orjson.dumps({"action": chosen}).decode()) == "$default"


def test_a_nested_route_selection():
    path = selection_path("$request.body.msg.type")
    assert route_key(path, '{"msg": {"type": "chat"}}') == "chat"
    assert route_key(path, '{"msg": "chat"}') == "$default"
    assert route_key(path, '{"type": "chat"}') == "$default"


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_route_selection_never_fails(body):
    assert isinstance(route_key(ACTION, body), str)


@pytest.mark.parametrize(
    "expression",
    ["action", "$request.body", "$request.body.", "$request.body.a..b", "${request.body.a}",
     "$request.header.x", "$request.body.a b", "$request.body." + "a." * 8 + "a"],
)  # fmt: skip
def test_route_selection_expressions_hotpool_cannot_evaluate_are_refused(expression):
    with pytest.raises(InvalidRequest, match="ws_route_selection"):
        FunctionConfig(ws_route_selection=expression)


def test_the_events_carry_api_gateways_request_context():
    connect = orjson.loads(
        ws_events.connect_event(
            ORIGIN, "r1", [("Host", "example.test:8000"), ("X-A", "1"), ("X-A", "2")], []
        )
    )
    assert connect["headers"] == {"Host": "example.test:8000", "X-A": "2"}
    assert connect["multiValueHeaders"]["X-A"] == ["1", "2"]
    assert connect["queryStringParameters"] is None
    context = connect["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["connectionId"] == ORIGIN.connection_id
    assert context["connectedAt"] == ORIGIN.connected_at_ms
    assert context["identity"] == {"sourceIp": "10.0.0.1", "userAgent": "ua/1"}
    assert context["apiId"] == "team.chat"
    assert context["stage"] == "ws"
    message = orjson.loads(ws_events.message_event(ORIGIN, "r2", b"\x00\x01", "$default"))
    assert message["isBase64Encoded"] is True
    assert base64.b64decode(message["body"]) == b"\x00\x01"
    assert message["requestContext"]["messageId"]
    gone = orjson.loads(ws_events.disconnect_event(ORIGIN, "r3", 0, ""))
    # a close frame without a status, as API Gateway reports it
    assert gone["requestContext"]["disconnectStatusCode"] == 1005
    assert gone["requestContext"]["disconnectReason"] == "Client-side close frame status not set"
    assert gone["requestContext"]["eventType"] == "DISCONNECT"


def test_connection_ids_are_url_safe_and_unguessable():
    ids = {ws_events.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(ws_events.CONNECTION_ID_RE.match(i) for i in ids)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"statusCode": 200, "body": "hi"}, "hi"),
        ({"body": "aGk=", "isBase64Encoded": True}, b"hi"),
        ({"body": {"a": 1}}, '{"a":1}'),
        ({"statusCode": 500, "body": "still sent"}, "still sent"),
        ({"statusCode": 200}, None),
        ({"body": None}, None),
        (None, None),
        ([1, "two"], '[1,"two"]'),
        ("text", '"text"'),
        (5, "5"),
    ],
)
def test_what_a_result_sends_back(result, expected):
    assert reply_of(result, orjson.dumps(result), 1024) == expected


def test_a_reply_that_cannot_be_sent():
    with pytest.raises(NoReply, match="base64"):
        reply_of({"body": "not base64!", "isBase64Encoded": True}, b"", 1024)
    with pytest.raises(NoReply, match="limit"):
        reply_of({"body": "x" * 1025}, b"", 1024)


def test_the_token_bucket_passes_a_burst_then_the_rate():
    bucket = TokenBucket.full(2.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [True, True, False]
    assert bucket.take(100.4) is False
    assert bucket.take(100.5) is True  # 0.5 s at 2/s: one more
    slow = TokenBucket.full(0.5, now=0.0)  # a rate under 1/s still lets one through
    assert slow.take(0.0) is True
    assert slow.take(1.0) is False
    assert slow.take(2.0) is True


def test_a_connection_closes_when_idle_or_too_old():
    deadlines = Deadlines(opened=0.0, idle_s=10.0, lifetime_s=100.0)
    assert deadlines.expired(9.0, last_active=0.0) is None
    assert deadlines.wait_s(9.0, last_active=0.0) == 1.0
    assert deadlines.expired(10.0, last_active=0.0) == "idle"
    assert deadlines.expired(95.0, last_active=90.0) is None
    assert deadlines.wait_s(95.0, last_active=90.0) == 5.0
    assert deadlines.expired(100.0, last_active=99.0) == "lifetime"
