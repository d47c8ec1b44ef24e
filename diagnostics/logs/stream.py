"""Reading a log as a stream of bytes: every line while the engine starts, then only the lines a cheap pre-filter
picks (a few `bytes.find` calls per 4 MiB chunk), so a day of server log is read at disk speed in bounded memory.

`ChunkReader(fh)` wraps a binary file (or `ChunkReader.of(text)` a str/bytes already in memory):
`line()` returns the next whole line (bytes, without its end), `candidate()` skips ahead to the next line that
contains one of FAILURE_KEYS and returns it with the few lines just above it (a traceback's frames), or None at the
end. Lines longer than the chunk are cut at the chunk size (a log line is never that long; a binary blob may be).
"""

from __future__ import annotations

import io
from typing import BinaryIO

CHUNK = 4 << 20
MAX_LINE = 256 << 10  # longer lines (a base64 image in a request log) are cut here; no vLLM memory line is that long
# Every line that can end a served engine: exception/error lines ("Error", "ERROR"), the kernel's OOM killer and
# signals ("Killed", "SIGKILL", "SIGSEGV"), shells' "... (core dumped)". Lines without them are never read.
FAILURE_KEYS = (b"rror", b"RROR", b"Killed", b"SIG", b"core dumped")
# Request-logger and access lines repeat user text (a prompt may say "error"); they never carry a failure.
NEVER_FAILURES = (b"Received request ", b"Added request ", b'HTTP/1.1" ', b'HTTP/1.0" ', b'HTTP/2" ')


class ChunkReader:
    """A binary stream read in CHUNK pieces; see the module docstring."""

    def __init__(self, fh: BinaryIO, chunk: int = CHUNK):
        self.fh, self.chunk = fh, chunk
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.bytes_read = 0
        self._next: dict[bytes, int] = {}

    @classmethod
    def of(cls, data: str | bytes, chunk: int = CHUNK) -> ChunkReader:
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
        return cls(io.BytesIO(raw), chunk)

    def _fill(self) -> bool:
        """Append the next chunk (dropping what was consumed); False at the end of the stream."""
        if self.eof:
            return False
        data = self.fh.read(self.chunk)
        if not data:
            self.eof = True
            return False
        self.bytes_read += len(data)
        self.buf = self.buf[self.pos:] + data
        self._next = {k: v - self.pos for k, v in self._next.items() if v >= self.pos}
        self.pos = 0
        return True

    def _line_end(self, start: int) -> tuple[int, int]:
        """(start, end) of the line that starts at `start`: end is its newline's index (len(buf) at the end of the
        stream). Reading more shifts the buffer, so `start` comes back shifted too."""
        while True:
            end = self.buf.find(b"\n", start)
            if end != -1:
                return start, end
            if len(self.buf) - start >= self.chunk:
                return start, len(self.buf)
            shift = self.pos
            if not self._fill():
                return start, len(self.buf)
            start -= shift

    def line(self) -> bytes | None:
        """The next line (without its newline), or None at the end. A line longer than MAX_LINE comes back cut
        to MAX_LINE bytes and the rest of it is skipped unread by the patterns (a 64 MiB line costs a read, not
        minutes of regular expressions)."""
        if self.pos >= len(self.buf) and not self._fill():
            return None
        start, end = self._line_end(self.pos)
        out = self.buf[start:min(end, start + MAX_LINE)]
        while end >= len(self.buf) and end - start >= self.chunk:  # cut at the chunk: skip to the line's end
            self.pos = len(self.buf)
            if not self._fill():
                return out
            start, end = self._line_end(0)
        self.pos = end + 1
        return out

    def _hit(self) -> int | None:
        """Position of the next FAILURE_KEYS occurrence at or after pos in the buffer, or None."""
        best = None
        for key in FAILURE_KEYS:
            at = self._next.get(key)
            if at is None or 0 <= at < self.pos:
                at = self._next[key] = self.buf.find(key, self.pos)  # -1: none in this buffer
            if at != -1 and (best is None or at < best):
                best = at
        return best

    def candidate(self, above: int = 40) -> tuple[list[bytes], bytes] | None:
        """(up to `above` lines before it, the next line holding a failure key), or None at the end."""
        while True:
            hit = self._hit()
            if hit is None:  # keep the unfinished last line and the `above` lines before it for the next chunk
                cut = len(self.buf)
                for _ in range(above + 1):
                    cut = self.buf.rfind(b"\n", self.pos, cut)
                    if cut == -1:
                        break
                self.pos = max(self.pos, cut + 1, len(self.buf) - 2 * self.chunk)  # bounded without newlines
                self._next = {}
                if not self._fill():
                    return None
                continue
            start = max(self.buf.rfind(b"\n", self.pos, hit) + 1, self.pos)
            start, end = self._line_end(start)
            line = self.buf[start:end]
            window = self._above(start, above)
            self.pos = end + 1
            if not any(k in line for k in NEVER_FAILURES):
                return window, line

    def _above(self, start: int, count: int) -> list[bytes]:
        """Up to `count` lines that end just before `start` and begin after the last consumed position."""
        lines: list[bytes] = []
        end = start - 1
        while len(lines) < count and end >= self.pos:
            begin = self.buf.rfind(b"\n", self.pos, end) + 1
            lines.append(self.buf[max(begin, self.pos):end])
            end = begin - 1
        return lines[::-1]
