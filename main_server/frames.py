"""The frames of a streamed container answer (DESIGN15 §A): HTTP/1.1 chunked transfer where
every chunk is one frame, a kind byte and its payload.

- ``H`` + JSON object: the web response head (first frame only);
- ``d`` + bytes: a part of an item, more of it follows; ``D`` + bytes: an item's last part;
- ``E`` + JSON object: the summary, always the last frame; then the terminating chunk.

``ChunkDecoder`` is pure: fed the bytes as they arrive, split anywhere, it returns the whole
frames and keeps the rest. A peer that breaks the rules (an ``H``/``d``/``D`` chunk over
``max_frame_bytes``, an ``E`` over the decoder's ``max_summary_bytes``, an unknown kind,
trailers or bytes after the terminator, bad framing) is refused with ``CallFailed``: the
container is hostile or broken, and its connection is dropped. The summary may be longer than
an item's frame: it carries the call's stdout and stderr, each up to the log limit.
"""

from __future__ import annotations

from hotpool.main_server.ports import CallFailed

HEAD = ord("H")
PART = ord("d")
ITEM_END = ord("D")
END = ord("E")
KINDS = frozenset({HEAD, PART, ITEM_END, END})
max_payload_bytes = 64 * 1024
max_frame_bytes = max_payload_bytes + 1  # the kind byte
# "10001;ext=..." is all a size line needs; a longer one is garbage
max_size_line_bytes = 256


class ChunkDecoder:
    """Turns a chunked body into frames; ``done`` once the terminating chunk was read."""

    def __init__(self, max_summary_bytes: int = max_frame_bytes) -> None:
        self._max_chunk_bytes = max(max_frame_bytes, max_summary_bytes)
        self._buffer = bytearray()
        self._size = -1  # the size of the chunk being read, -1 while reading its size line
        self.done = False

    @property
    def pending_bytes(self) -> int:
        """Bytes received and not yet returned as a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by ``data`` (each: kind byte + payload), in order; raises
        CallFailed for a body that breaks the framing, or bytes after its end."""
        if self.done:
            raise CallFailed("the container sent bytes after the end of its stream")
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        pos = 0
        while True:
            if self._size < 0:
                end = buffer.find(b"\r\n", pos)
                if end < 0:
                    if len(buffer) - pos > max_size_line_bytes:
                        raise CallFailed("the container's chunk size line is too long")
                    break
                self._size = _chunk_size(bytes(buffer[pos:end]), self._max_chunk_bytes)
                pos = end + 2
            if self._size == 0:  # the terminator: no trailers, just the final CRLF
                if len(buffer) - pos < 2:
                    break
                if buffer[pos : pos + 2] != b"\r\n" or len(buffer) > pos + 2:
                    raise CallFailed("the container's stream does not end as chunked data must")
                pos += 2
                self.done = True
                break
            if self._size > max_frame_bytes and len(buffer) > pos and buffer[pos] != END:
                # only the summary may be longer: refused before the rest of it is read
                raise CallFailed(
                    f"the container sent a frame of {self._size} bytes; at most {max_frame_bytes}"
                )
            if len(buffer) - pos < self._size + 2:
                break
            stop = pos + self._size
            if buffer[stop : stop + 2] != b"\r\n":
                raise CallFailed("a chunk of the container's stream is not followed by CRLF")
            frame = bytes(buffer[pos:stop])
            if frame[0] not in KINDS:
                raise CallFailed(f"the container sent a frame of unknown kind {frame[:1]!r}")
            frames.append(frame)
            pos = stop + 2
            self._size = -1
        del buffer[:pos]
        return frames


def _chunk_size(line: bytes, limit: int) -> int:
    text = line.partition(b";")[0].strip()
    if not text or len(text) > 8 or not all(c in b"0123456789abcdefABCDEF" for c in text):
        raise CallFailed(f"the container sent a bad chunk size {line[:40]!r}")
    size = int(text, 16)
    if size > limit:
        raise CallFailed(f"the container sent a frame of {size} bytes; at most {limit}")
    return size
