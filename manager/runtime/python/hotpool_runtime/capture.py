"""Bounded capture of what user code prints, so it reaches the execution record, not the reply."""

from __future__ import annotations

import io
import sys
import threading

TRUNCATION_MARKER = "\n[truncated]"


class CaptureStream(io.TextIOBase):
    """A text stream keeping the first ``limit_bytes`` of its UTF-8 output.

    Once released it forwards writes to whatever ``sys.<name>`` is at that moment, so a
    stream user code kept a reference to (``logging.basicConfig`` at import time) still
    reaches the capture of the invocation that is running instead of vanishing.
    """

    def __init__(self, name: str, limit_bytes: int) -> None:
        super().__init__()
        self._name = name
        self._limit = limit_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self._truncated = False
        self._released = False
        # User code may print from its own threads while the handler runs.
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._released:
            return self._forward(text)
        data = text.encode("utf-8", "backslashreplace")
        with self._lock:
            room = self._limit - self._size
            if len(data) > room:
                data, self._truncated = data[:room], True
            if data:
                self._chunks.append(data)
                self._size += len(data)
        return len(text)

    def release(self) -> None:
        """Stop capturing; later writes go to the then-current ``sys.<name>``."""
        self._released = True

    def getvalue(self) -> str:
        """The captured text, with a marker when output was cut at the limit."""
        with self._lock:
            # "ignore" drops a multi-byte character split by the byte limit.
            text = b"".join(self._chunks).decode("utf-8", "ignore")
            return text + TRUNCATION_MARKER if self._truncated else text

    def _forward(self, text: str) -> int:
        target = getattr(sys, self._name, None)
        if target is self or target is None:
            target = getattr(sys, f"__{self._name}__", None)
        return target.write(text) if target is not None else len(text)


class CapturedOutput:
    """A with-block replacing sys.stdout and sys.stderr with bounded captures."""

    def __init__(self, limit_bytes: int) -> None:
        self.stdout = CaptureStream("stdout", limit_bytes)
        self.stderr = CaptureStream("stderr", limit_bytes)

    def __enter__(self) -> CapturedOutput:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Capture from now on (what the with-block does on entry)."""
        self._saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.stdout, self.stderr

    def stop(self) -> None:
        """Restore the streams saved by ``start``; a second call does nothing. A streamed
        result stops the capture only once its last item is produced."""
        if self.stdout._released:
            return
        sys.stdout, sys.stderr = self._saved
        self.stdout.release()
        self.stderr.release()

    def logs(self) -> dict[str, str]:
        """The ``stdout`` and ``stderr`` fields of a response."""
        return {"stdout": self.stdout.getvalue(), "stderr": self.stderr.getvalue()}
