"""Tests of the error tree (shared.errors) and its HTTP answers (shared.http.error_response)."""

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
