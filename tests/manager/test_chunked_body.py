"""The relay's chunked-body decoder (``hotpool_runtime.chunked``), a pure function of the
bytes fed: any split of a body decodes to the same chunks, trailers and leftover, and a
malformed body is refused before it is held."""

from __future__ import annotations

import itertools
import sys
import types
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpool.manager.runtimes import PYTHON_BOOTSTRAP as BOOTSTRAP_PATH

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def chunked() -> Iterator[types.SimpleNamespace]:
    """The decoder and its error, imported from the bootstrap's folder."""
    sys.path.insert(0, str(BOOTSTRAP_PATH))
    try:
        from hotpool_runtime import chunked, errors

        yield types.SimpleNamespace(
            ChunkedBody=chunked.ChunkedBody, RequestError=errors.RequestError
        )
    finally:
        sys.path.remove(str(BOOTSTRAP_PATH))


def encode(chunks: list[bytes], trailers: dict[str, str]) -> bytes:
    body = b"".join(b"%x;ext=1\r\n%b\r\n" % (len(c), c) for c in chunks if c)
    lines = "".join(f"{name}: {value}\r\n" for name, value in trailers.items())
    return body + b"0\r\n" + lines.encode() + b"\r\n"


def decode(chunked, data: bytes, cuts: list[int]):
    body = chunked.ChunkedBody()
    got: list[bytearray] = [bytearray()]
    rest = b""
    for a, b in itertools.pairwise([0, *cuts, len(data)]):
        pieces, rest = body.feed(data[a:b])
        for piece, ends in pieces:
            got[-1] += piece
            if ends:
                got.append(bytearray())
        if body.done:
            rest += data[b:]
            break
    return [bytes(c) for c in got[:-1]], body.trailers, rest, body.done


@given(
    st.lists(st.binary(min_size=1, max_size=40), max_size=5),
    st.dictionaries(st.sampled_from(["x-a", "lambda-runtime-function-error-type"]),
                    st.text("abcXYZ=+/", max_size=10), max_size=2),
    st.binary(max_size=10),
    st.data(),
)  # fmt: skip
def test_any_split_of_a_body_gives_its_chunks_trailers_and_leftover(
    chunked, chunks, trailers, after, data
):
    raw = encode(chunks, trailers) + after
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(raw) - 1)), max_size=6)))
    got, got_trailers, rest, done = decode(chunked, raw, [c for c in cuts if c < len(raw)])
    assert done
    assert got == chunks
    assert got_trailers == {name: value.strip() for name, value in trailers.items()}
    assert rest == after


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"1g\r\n", "malformed chunk size line"),
        (b"1" * 17 + b"\r\n", "malformed chunk size line"),
        (b"f" * 5000, "too long"),
        (b"2\r\nabc\r\n", "not followed by CRLF"),
        (b"0\r\n" + b"x-big: " + b"y" * 4000 + b"\r\n" + b"x: 1\r\n" * 15000, "trailers over"),
        (b"0\r\nno colon\r\n", "malformed trailer line"),
    ],
)
def test_a_malformed_body_is_refused(chunked, raw, reason):
    body = chunked.ChunkedBody()
    with pytest.raises(chunked.RequestError, match=reason):
        for start in range(0, len(raw), 1000):
            body.feed(raw[start : start + 1000])


def test_a_huge_chunk_is_passed_on_in_pieces_never_held(chunked):
    body = chunked.ChunkedBody()
    pieces, _ = body.feed(b"ffffffffffffffff\r\n" + b"z" * 70000)
    assert pieces == [(b"z" * 70000, False)]
    pieces, _ = body.feed(b"z" * 10)
    assert pieces == [(b"z" * 10, False)] and not body.done
