"""A chunked request body (HTTP/1.1 ``Transfer-Encoding: chunked``), decoded as it arrives.

``ChunkedBody`` is pure: fed the bytes as they are received, split anywhere, it returns the
chunk data in pieces (slices of what it was fed, never joined: it holds only a size line or
a trailer line, each bounded) and, once the terminating chunk and its trailers are read,
``done``, the ``trailers`` (names lower-cased) and the bytes fed past the body's end (a
pipelined request's). A body that breaks the rules raises RequestError(400): a size line that
is not hex (or longer than ``MAX_SIZE_DIGITS`` digits), a line over ``MAX_LINE_BYTES``,
trailers over ``MAX_TRAILER_BYTES``, a chunk not followed by CRLF.
"""

from __future__ import annotations

from .errors import bad_request

MAX_LINE_BYTES = 4096
MAX_SIZE_DIGITS = 16  # 2**64: no chunk is longer, and int() is never fed a long number
MAX_TRAILER_BYTES = 64 * 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")
# where the decoder is: a size line, a chunk's data, the CRLF after it, the trailer lines
_SIZE, _DATA, _CRLF, _TRAILERS = range(4)


class ChunkedBody:
    """Decodes one chunked body (see the module docstring)."""

    def __init__(self) -> None:
        self._line = bytearray()  # a size line, a chunk's CRLF or a trailer line, unfinished
        self._state = _SIZE
        self._left = 0  # data bytes left in the current chunk
        self._trailer_bytes = 0
        self.trailers: dict[str, str] = {}
        self.done = False

    def feed(self, data: bytes) -> tuple[list[tuple[bytes, bool]], bytes]:
        """The chunk data in ``data``, each piece with True when it ends its chunk, and the
        bytes past the body's end (once ``done``); raises RequestError(400) on a bad body."""
        pieces: list[tuple[bytes, bool]] = []
        view = memoryview(data)
        pos = 0
        while pos < len(view) and not self.done:
            if self._state == _DATA:
                take = min(self._left, len(view) - pos)
                self._left -= take
                pieces.append((bytes(view[pos : pos + take]), self._left == 0))
                pos += take
                if self._left == 0:
                    self._state = _CRLF
                continue
            line, pos = self._read_line(view, pos)
            if line is None:
                break
            self._on_line(line)
        return pieces, bytes(view[pos:]) if self.done else b""

    def _read_line(self, view: memoryview, pos: int) -> tuple[bytes | None, int]:
        """A whole line (CRLF dropped) from what is held and ``view``, or None for more."""
        end = bytes(view[pos : pos + MAX_LINE_BYTES + 2]).find(b"\n")
        if end < 0:
            self._line += view[pos:]
            if len(self._line) > MAX_LINE_BYTES:
                raise bad_request("a chunk size or trailer line is too long")
            return None, len(view)
        self._line += view[pos : pos + end + 1]
        line, self._line = bytes(self._line), bytearray()
        if len(line) > MAX_LINE_BYTES + 2 or not line.endswith(b"\r\n"):
            raise bad_request(f"malformed chunked body line: {line[:100]!r}")
        return line[:-2], pos + end + 1

    def _on_line(self, line: bytes) -> None:
        if self._state == _CRLF:
            if line:
                raise bad_request("chunk not followed by CRLF")
            self._state = _SIZE
        elif self._state == _SIZE:
            digits = line.split(b";", 1)[0].strip()
            if not digits or len(digits) > MAX_SIZE_DIGITS or not set(digits) <= _HEX:
                raise bad_request(f"malformed chunk size line: {line[:100]!r}")
            self._left = int(digits, 16)
            self._state = _DATA if self._left else _TRAILERS
        elif not line:  # the empty line after the trailers: the body is over
            self.done = True
        else:
            self._trailer_bytes += len(line) + 2
            if self._trailer_bytes > MAX_TRAILER_BYTES:
                raise bad_request(f"trailers over {MAX_TRAILER_BYTES} bytes")
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise bad_request(f"malformed trailer line: {line[:100]!r}")
            self.trailers[name.lower()] = value.strip()


class SizedBody:
    """A body of ``length`` bytes (Content-Length), with ``ChunkedBody``'s interface: the
    whole body is one chunk."""

    def __init__(self, length: int) -> None:
        self._left = length
        self.trailers: dict[str, str] = {}
        self.done = length == 0

    def feed(self, data: bytes) -> tuple[list[tuple[bytes, bool]], bytes]:
        """The body's bytes in ``data`` (True on the last piece), and the bytes past its end."""
        take = min(self._left, len(data))
        self._left -= take
        self.done = self._left == 0
        pieces = [(data[:take], self.done)] if take else []
        return pieces, data[take:]
