"""SigV4 on the @connections API, without a server: a request botocore signed with a
function's derived credentials verifies as that function; every part of the signature that
could be wrong (header, scope, service, date, access key, body, path) is refused with
Unauthorized, and the AWS credentials are what a token makes them."""

from __future__ import annotations

import datetime

import fakeredis
import pytest
from aiohttp.test_utils import make_mocked_request

from hotpool.main_server.ws_sigv4 import check_date, parse, verify
from hotpool.shared.errors import Unauthorized
from hotpool.shared.ws_token import (
    ConnectionTokens,
    access_key_id,
    derive,
    function_of_access_key,
)
from tests.main_server.ws_clients import sigv4_headers

pytestmark = pytest.mark.unit

HOST = "127.0.0.1:8080"
PATH = "/ws/@connections/conn0001%3D"
NOW = datetime.datetime(2025, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
SIGNED_AT = NOW.replace(tzinfo=None)


@pytest.fixture
def tokens() -> ConnectionTokens:
    return ConnectionTokens(fakeredis.FakeAsyncRedis())


async def _verify(tokens, method, path, body, headers, now=NOW) -> str:
    request = make_mocked_request(method, path, headers={"Host": HOST, **headers})
    return await verify(request, body, tokens, now)


def _signed(token: str, method: str = "POST", body: bytes = b"hello", **options) -> dict:
    return sigv4_headers(method, f"http://{HOST}{PATH}", body, token, at=SIGNED_AT, **options)


async def test_a_request_botocore_signed_verifies_as_the_tokens_function(tokens):
    token = await tokens.token("acme.chat")
    for method, body in (("POST", b"hello"), ("GET", b""), ("DELETE", b"")):
        headers = _signed(token, method, body)
        assert await _verify(tokens, method, PATH, body, headers) == "acme.chat"


async def test_altered_body_path_method_or_secret_are_refused(tokens):
    token = await tokens.token("acme.chat")
    headers = _signed(token)
    forged = _signed(derive(b"a guessed signing key", "acme.chat"))
    attempts = [
        ("POST", PATH, b"hellO", headers),
        ("POST", "/ws/@connections/conn0002%3D", b"hello", headers),
        ("DELETE", PATH, b"hello", headers),
        ("POST", PATH + "?x=1", b"hello", headers),
        ("POST", PATH, b"hello", forged),
    ]
    for method, path, body, sent in attempts:
        with pytest.raises(Unauthorized, match="does not match"):
            await _verify(tokens, method, path, body, sent)


async def test_a_content_hash_claim_must_be_the_bodys(tokens):
    token = await tokens.token("acme.chat")
    claim = {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    headers = _signed(token, headers=claim)
    with pytest.raises(Unauthorized, match="SHA-256 of the body"):
        await _verify(tokens, "POST", PATH, b"anything at all", headers)


@pytest.mark.parametrize(
    ("header", "refusal"),
    [
        ("AWS4-HMAC-SHA256 Credential=k/20250301/us-east-1/execute-api/aws4_request", "lacks"),
        ("AWS4-HMAC-SHA256 Credential=k/20250301/execute-api/aws4_request, "
         "SignedHeaders=host;x-amz-date, Signature=00", "is not <access key>"),
        ("AWS4-HMAC-SHA256 Credential=k/20250301/us-east-1/execute-api/aws5_request, "
         "SignedHeaders=host;x-amz-date, Signature=00", "is not <access key>"),
        ("AWS4-HMAC-SHA256 Credential=k/20250301/us-east-1/s3/aws4_request, "
         "SignedHeaders=host;x-amz-date, Signature=00", "service 's3'"),
        ("AWS4-HMAC-SHA256 Credential=k/20250301/us-east-1/execute-api/aws4_request, "
         "SignedHeaders=x-amz-date, Signature=00", "cover the headers host"),
    ],
)  # fmt: skip
def test_a_malformed_authorization_header_says_what_is_wrong(header, refusal):
    with pytest.raises(Unauthorized, match=refusal):
        parse(header)


@pytest.mark.parametrize(
    ("offset_s", "accepted"), [(0, True), (-899, True), (899, True), (-901, False), (901, False)]
)
def test_a_signature_is_good_for_15_minutes_either_side(offset_s, accepted):
    signed_at = NOW + datetime.timedelta(seconds=offset_s)
    amz_date = signed_at.strftime("%Y%m%dT%H%M%SZ")
    if accepted:
        check_date(amz_date, amz_date[:8], NOW)
    else:
        with pytest.raises(Unauthorized, match="expired"):
            check_date(amz_date, amz_date[:8], NOW)


def test_a_missing_malformed_or_mismatched_date_is_refused():
    for amz_date, scope_date, refusal in (
        (None, "20250301", "needs an X-Amz-Date"),
        ("2025-03-01T12:00:00Z", "20250301", "is not YYYYMMDD"),
        ("20250301T120000Z", "20250228", "not X-Amz-Date's"),
    ):
        with pytest.raises(Unauthorized, match=refusal):
            check_date(amz_date, scope_date, NOW)


async def test_an_expired_signature_is_refused_before_anything_else(tokens):
    token = await tokens.token("acme.chat")
    headers = _signed(token)
    later = NOW + datetime.timedelta(minutes=16)
    with pytest.raises(Unauthorized, match="expired"):
        await _verify(tokens, "POST", PATH, b"hello", headers, now=later)


async def test_an_access_key_hotpool_never_gave_out_is_unknown(tokens):
    token = await tokens.token("acme.chat")
    for access_key in ("AKIAIOSFODNN7EXAMPLE", "hpc_", "hpc_%%%", access_key_id(token) + "!"):
        with pytest.raises(Unauthorized, match="access key id is not one hotpool gave out"):
            await tokens.secret_of(access_key)


async def test_session_credentials_are_refused(tokens):
    token = await tokens.token("acme.chat")
    headers = _signed(token, headers={"X-Amz-Security-Token": "a-session"})
    with pytest.raises(Unauthorized, match="session credentials"):
        await _verify(tokens, "POST", PATH, b"hello", headers)


async def test_the_access_key_id_names_the_function_and_fits_the_credential_scope(tokens):
    for function in ("chat", "acme.chat-v2", "a" * 40 + "." + "b" * 60):
        token = await tokens.token(function)
        access_key = access_key_id(token)
        assert "/" not in access_key and "," not in access_key and "=" not in access_key
        assert token.startswith(access_key + "_")
        assert function_of_access_key(access_key) == function
        assert await tokens.secret_of(access_key) == (function, token)
