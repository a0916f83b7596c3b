"""Tests of the error tree (shared.errors), its HTTP answers (shared.http.error_response) and its
way back from a body (shared.errors.error_from_body)."""

from __future__ import annotations

import inspect

import orjson
import pytest

from hotpool.shared import errors
from hotpool.shared.errors import (
    ClientError,
    FunctionError,
    HotpoolError,
    PlatformError,
    TooManyRequests,
    all_error_classes,
    error_from_body,
)
from hotpool.shared.http import error_response

pytestmark = pytest.mark.unit

ALL = all_error_classes()


def make(cls: type[HotpoolError]) -> HotpoolError:
    """An instance of any error class, with the extra arguments some of them need."""
    if issubclass(cls, FunctionError):
        return cls("boom", error_type="ZeroDivisionError", traceback="Traceback ...")
    return cls(f"{cls.__name__} happened")


def ids(classes: list[type]) -> list[str]:
    return [c.__name__ for c in classes]


def test_all_error_classes_lists_every_class_of_the_module():
    defined = {
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, HotpoolError)
    }

    assert set(ALL) == defined
    assert len(ALL) == len(defined)


@pytest.mark.parametrize("cls", ALL, ids=ids(ALL))
def test_every_error_has_an_http_error_status(cls):
    assert 400 <= cls.status <= 599


CLIENT = [c for c in ALL if issubclass(c, ClientError)]
PLATFORM = [c for c in ALL if issubclass(c, PlatformError)]


@pytest.mark.parametrize("cls", CLIENT, ids=ids(CLIENT))
def test_client_errors_are_4xx(cls):
    assert 400 <= cls.status <= 499


@pytest.mark.parametrize("cls", PLATFORM, ids=ids(PLATFORM))
def test_platform_errors_are_5xx(cls):
    assert 500 <= cls.status <= 599


def test_function_error_is_500_and_neither_client_nor_platform():
    assert FunctionError.status == 500
    assert not issubclass(FunctionError, (ClientError, PlatformError))


def test_error_codes_are_distinct():
    codes = [c.code for c in ALL]

    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", ALL, ids=ids(ALL))
def test_error_response_has_status_and_json_body(cls):
    exc = make(cls)

    response = error_response(exc)

    assert response.status == cls.status
    assert response.content_type == "application/json"
    body = orjson.loads(response.body)
    assert body["error"]["code"] == cls.code
    assert body["error"]["message"] == exc.message


@pytest.mark.parametrize("cls", ALL, ids=ids(ALL))
def test_only_function_errors_carry_the_function_error_header(cls):
    response = error_response(make(cls))

    assert ("X-Hotpool-Function-Error" in response.headers) == issubclass(cls, FunctionError)


def test_error_response_carries_details_and_extra_headers():
    exc = errors.NotFound("no such function", function="echo")

    response = error_response(exc, headers={"X-Request-Id": "r1"})

    assert orjson.loads(response.body)["error"]["function"] == "echo"
    assert response.headers["X-Request-Id"] == "r1"


@pytest.mark.parametrize(
    ("retry_after_s", "header"),
    [(1.0, "1"), (3.0, "3"), (2.6, "3"), (0.2, "1"), (0.0, "1")],
)
def test_too_many_requests_sets_retry_after_in_whole_seconds(retry_after_s, header):
    response = error_response(TooManyRequests("slow down", retry_after_s=retry_after_s))

    assert response.status == 429
    assert response.headers["Retry-After"] == header


def test_function_error_sets_header_to_error_type_and_body_to_details():
    exc = FunctionError("division by zero", error_type="ZeroDivisionError", traceback="tb")

    response = error_response(exc)

    assert response.status == 500
    assert response.headers["X-Hotpool-Function-Error"] == "ZeroDivisionError"
    body = orjson.loads(response.body)["error"]
    assert body == {
        "code": "FunctionError",
        "type": "ZeroDivisionError",
        "message": "division by zero",
        "traceback": "tb",
    }


# --- error_from_body: an error across the wire between hotpool's services ------------------------


def with_details(cls: type[HotpoolError]) -> HotpoolError:
    """An instance of any error class carrying details, as services send them."""
    if issubclass(cls, FunctionError):
        return cls("boom", error_type="MemoryError", traceback="Traceback ...", phase="init")
    return cls(f"{cls.__name__} happened", full=True, function="echo")


@pytest.mark.parametrize("make_one", [make, with_details], ids=["plain", "with details"])
@pytest.mark.parametrize("cls", ALL, ids=ids(ALL))
def test_every_error_is_rebuilt_from_its_body(cls, make_one):
    sent = make_one(cls)

    got = error_from_body(cls.status, orjson.loads(orjson.dumps(sent.to_dict())))

    assert type(got) is cls
    assert (got.message, got.details) == (sent.message, sent.details)
    assert got.to_dict() == sent.to_dict()
    if isinstance(sent, FunctionError):
        assert isinstance(got, FunctionError)
        assert (got.error_type, got.traceback) == (sent.error_type, sent.traceback)


def test_a_rebuilt_too_many_requests_keeps_retry_after_s_when_the_body_has_it():
    body = {"error": {"code": "TooManyRequests", "message": "slow down", "retry_after_s": 7.5}}

    got = error_from_body(429, body)

    assert isinstance(got, TooManyRequests) and got.retry_after_s == 7.5


UNKNOWN = {
    "unknown code, 401": (401, "NewCode", errors.Unauthorized),
    "unknown code, 404": (404, "NewCode", errors.NotFound),
    "unknown code, 405": (405, "MethodNotAllowed", ClientError),
    "unknown code, 429": (429, "NewCode", TooManyRequests),
    "unknown code, 500": (500, "NewCode", PlatformError),
    "unknown code, 502": (502, "NewCode", errors.ContainerFailed),
    "unknown code, 503": (503, "NewCode", errors.NoCapacity),
    "unknown code, 504": (504, "NewCode", errors.InvocationTimeout),
    "no code, 418": (418, None, ClientError),
}


@pytest.mark.parametrize(("status", "code", "cls"), UNKNOWN.values(), ids=UNKNOWN.keys())
def test_an_unknown_code_becomes_the_class_of_its_status(status, code, cls):
    body = {"error": {"message": "something", "hint": "h"} | ({"code": code} if code else {})}

    got = error_from_body(status, body)

    assert type(got) is cls
    assert (got.message, got.details) == ("something", {"hint": "h"})


@pytest.mark.parametrize(
    "body", [None, [], "oops", {"error": "oops"}, {}, {"error": {"code": ["x"]}}]
)
def test_a_body_without_an_error_object_still_gives_an_error(body):
    got = error_from_body(502, body)

    assert type(got) is errors.ContainerFailed and got.message == "HTTP 502"


def test_a_function_error_without_a_type_is_error():
    got = error_from_body(500, {"error": {"code": "FunctionError", "message": "boom"}})

    assert isinstance(got, FunctionError)
    assert (got.error_type, got.traceback, got.details) == ("Error", "", {})
