"""AWS Signature Version 4 on the ``@connections`` API, so that boto3's
``apigatewaymanagementapi`` client works unchanged inside a WebSocket function.

The function's env holds AWS credentials made of its connections token (``shared.ws_token``):
the access key id names the function, the secret is the token. The client signs with them and
sends only the access key id; Main derives the token again, rebuilds the request as the client
signed it (method, the Host it sent to, the raw path and query, the signed headers, the body)
and recomputes the signature with botocore's own SigV4 code. As on AWS, a signature more than
15 minutes from Main's clock is refused; unlike AWS, refusals are 401 and any region is taken
(the region is part of what was signed).
"""

from __future__ import annotations

import datetime
import hmac
from dataclasses import dataclass

from aiohttp import web
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hotpool.shared.errors import Unauthorized
from hotpool.shared.ws_token import ConnectionTokens

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
TERMINATOR = "aws4_request"
AUTHORIZATION_FIELDS = ("Credential", "SignedHeaders", "Signature")
MAX_CLOCK_SKEW_S = 15 * 60  # AWS's: a signature is good for 15 minutes either side
# headers every signature must cover, as AWS requires
REQUIRED_SIGNED_HEADERS = ("host", "x-amz-date")
CONTENT_SHA256 = "X-Amz-Content-SHA256"
BAD_SIGNATURE = (
    "the AWS signature does not match the request: sign it with the AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY of the WebSocket function's environment"
)


@dataclass(frozen=True)
class Authorization:
    """The parts of a SigV4 ``Authorization`` header."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def is_sigv4(header: str | None) -> bool:
    """Whether an ``Authorization`` header is an AWS SigV4 signature."""
    return header is not None and header.startswith(ALGORITHM + " ")


def parse(header: str) -> Authorization:
    """``AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request,
    SignedHeaders=<a;b>, Signature=<hex>``, or Unauthorized saying what is wrong."""
    fields = {}
    for part in header[len(ALGORITHM) :].split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    missing = [name for name in AUTHORIZATION_FIELDS if not fields.get(name)]
    if missing:
        raise Unauthorized(f"the AWS4-HMAC-SHA256 Authorization header lacks {', '.join(missing)}")
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != TERMINATOR:
        raise Unauthorized(
            "the signature's Credential is not <access key>/<date>/<region>/<service>/aws4_request"
        )
    access_key, date, region, service, _ = scope
    if service != SERVICE:
        raise Unauthorized(f"the signature is for service {service!r}; @connections is {SERVICE!r}")
    signed = tuple(fields["SignedHeaders"].split(";"))
    unsigned = [name for name in REQUIRED_SIGNED_HEADERS if name not in signed]
    if unsigned:
        raise Unauthorized(f"the signature must cover the headers {', '.join(unsigned)}")
    return Authorization(access_key, date, region, service, signed, fields["Signature"])


def check_date(amz_date: str | None, scope_date: str, now: datetime.datetime) -> None:
    """Refuse a missing or malformed X-Amz-Date, one more than 15 minutes from ``now``, or one
    whose day is not the credential scope's."""
    if amz_date is None:
        raise Unauthorized("a SigV4 request needs an X-Amz-Date header")
    try:
        signed_at = datetime.datetime.strptime(amz_date, SIGV4_TIMESTAMP)
    except ValueError:
        raise Unauthorized(f"X-Amz-Date {amz_date!r} is not YYYYMMDD'T'HHMMSS'Z'") from None
    skew_s = abs((signed_at.replace(tzinfo=datetime.UTC) - now).total_seconds())
    if skew_s > MAX_CLOCK_SKEW_S:
        raise Unauthorized(
            f"the signature expired: X-Amz-Date {amz_date} is more than "
            f"{MAX_CLOCK_SKEW_S // 60} minutes from the server's time; check the clock"
        )
    if amz_date[:8] != scope_date:
        raise Unauthorized("the date of the signature's Credential is not X-Amz-Date's")


def signature(auth: Authorization, secret: str, request: AWSRequest) -> str:
    """The signature botocore makes of ``request`` (with ``context["timestamp"]`` set) under
    ``auth``'s scope and ``secret``. A claimed X-Amz-Content-SHA256 must be the body's own
    hash: botocore signs the claim in place of the body."""
    signer = SigV4Auth(Credentials(auth.access_key, secret), auth.service, auth.region)
    claimed = request.headers.get(CONTENT_SHA256)
    if claimed is not None and claimed != signer.payload(request):
        raise Unauthorized(f"{CONTENT_SHA256} is not the SHA-256 of the body")
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def as_signed(request: web.Request, auth: Authorization, body: bytes) -> AWSRequest:
    """The request as the client's botocore had it when it signed: the method, the raw path
    and query, the signed headers (Host among them), the body and X-Amz-Date."""
    # the URL's host and scheme are not signed (the Host header is): a fixed http:// one
    # keeps a hostile Host out of the URL's parsing and has botocore hash the body, as a client
    # does that signs for http, or for https with payload signing on (its default)
    url = f"http://hotpool{request.raw_path}"
    rebuilt = AWSRequest(method=request.method, url=url, data=body)
    for name in auth.signed_headers:
        for value in request.headers.getall(name, ()):
            rebuilt.headers[name] = value  # botocore's headers append: repeats are kept
    rebuilt.context["timestamp"] = request.headers["X-Amz-Date"]  # check_date saw it
    return rebuilt


async def verify(
    request: web.Request, body: bytes, tokens: ConnectionTokens, now: datetime.datetime
) -> str:
    """The qualified function whose credentials signed ``request``; Unauthorized otherwise."""
    auth = parse(request.headers["Authorization"])
    check_date(request.headers.get("X-Amz-Date"), auth.date, now)
    if "X-Amz-Security-Token" in request.headers:
        raise Unauthorized("session credentials are not accepted: no hotpool key has a token")
    function, secret = await tokens.secret_of(auth.access_key)
    expected = signature(auth, secret, as_signed(request, auth, body))
    if not hmac.compare_digest(expected.encode(), auth.signature.encode()):
        raise Unauthorized(BAD_SIGNATURE)
    return function
