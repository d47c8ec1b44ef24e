"""Read a log a user hands us (a path or `-`) into text: any encoding vLLM logs arrive in, compressed or not, and
a one-line UsageError for what is not a log at all (empty, binary, endless).

Accepted: UTF-8 (with or without BOM), UTF-16 / UTF-32 with a BOM, UTF-16 LE or BE without a BOM (what Windows
PowerShell's `>` writes), gzip / bz2 / xz compressed logs (`vllm.log.gz`). Bytes that are not valid UTF-8 are
replaced, not fatal (a Latin-1 host name must not hide the OOM line). Input is read in chunks up to MAX_BYTES;
past that (e.g. `/dev/urandom` or `yes | ...`) it is refused instead of filling memory. On a terminal, input
longer than PROGRESS_BYTES shows a progress line on stderr.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import sys
import zlib
from typing import BinaryIO

from diagnostics.errors import UsageError

MiB = 1 << 20
MAX_BYTES = 256 * MiB  # the largest vLLM start-up log in the field cases is under 2 MiB
CHUNK = 1 * MiB
PROGRESS_BYTES = 16 * MiB
SNIFF = 8192
ACCEPTED = "a vLLM log as text (UTF-8 or UTF-16), optionally gzip/bz2/xz compressed, or - for standard input"

COMPRESSED = {b"\x1f\x8b": ("gzip", gzip.decompress), b"BZh": ("bz2", bz2.decompress),
              b"\xfd7zXZ\x00": ("xz", lzma.decompress)}
# Formats worth naming when someone passes them instead of a log.
KNOWN_BINARY = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"\x7fELF": "an executable (ELF)",
                b"PK\x03\x04": "a zip archive (unpack it and pass the log inside)", b"%PDF": "a PDF document",
                b"\x28\xb5\x2f\xfd": "a zstd archive (unpack it and pass the log inside)",
                b"SQLite format 3": "an SQLite database"}
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_text_input(path: str, *, stdin: BinaryIO | None = None, progress: bool | None = None) -> str:
    """The text of the log at `path` (`-`: standard input), decoded and decompressed.

    Raises UsageError (one line naming the input and what is accepted) when it cannot be read, is empty, is
    binary data, or exceeds MAX_BYTES (also after decompression).
    """
    name = "standard input" if path == "-" else repr(path)
    if progress is None:
        progress = sys.stderr.isatty()
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        data = _read_capped(stream, name, progress)
    else:
        try:
            check_readable_file(path)
            with open(path, "rb") as stream:
                data = _read_capped(stream, name, progress)
        except OSError as exc:
            raise UsageError(f"cannot read log file {path!r}: {exc.strerror or exc}; accepted: {ACCEPTED}") from None
    return decode_log(data, name)


def check_readable_file(path: str) -> bool:
    """True for a regular file; False for a device (/dev/null, /dev/zero: read like a stream); UsageError for a
    FIFO or a socket, which would block until something writes to it (`cat fifo | ... -` reads one on purpose).
    A path that cannot be stat'ed is left for open() to name its error."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket"
        raise UsageError(f"{path!r} is {kind}, not a file: reading it would wait for a writer; accepted: "
                         f"{ACCEPTED} (e.g. cat {path} | ... explain -)")
    return stat.S_ISREG(mode)


def _read_capped(stream: BinaryIO, name: str, progress: bool) -> bytes:
    """Chunks until EOF or MAX_BYTES; stops after the first chunk when it already shows binary data."""
    buf = io.BytesIO()
    shown = False
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        buf.write(chunk)
        size = buf.tell()
        if size == len(chunk) and describe_binary(chunk[:SNIFF]) is not None and _compression(chunk) is None:
            break  # binary from the first bytes on (/dev/zero): the rest will not change the answer
        if size > MAX_BYTES:
            raise UsageError(f"{name} is longer than {MAX_BYTES // MiB} MiB (an endless stream?); accepted: {ACCEPTED} "
                             f"(cut a long log to its start-up part)")
        if progress and size >= PROGRESS_BYTES:
            sys.stderr.write(f"\rreading {name}: {size // MiB} MiB")
            shown = True
    if shown:
        sys.stderr.write("\n")
    return buf.getvalue()


def _compression(data: bytes) -> tuple[str, object] | None:
    for magic, entry in COMPRESSED.items():
        if data.startswith(magic):
            return entry
    return None


def utf16_without_bom(sample: bytes) -> str | None:
    """"utf-16-le" / "utf-16-be" when every other byte of the sample is NUL and the rest is text, else None."""
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    for zeros, text, codec in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros.count(0) >= 0.9 * len(zeros) and text.count(0) <= 0.05 * len(text):
            return codec
    return None


def describe_binary(sample: bytes) -> str | None:
    """What a non-text sample is ("a PNG image", "all zero bytes", "binary data"), or None for text."""
    if not sample:
        return None
    for magic, what in KNOWN_BINARY.items():
        if sample.startswith(magic):
            return what
    if any(sample.startswith(bom) for bom, _ in BOMS) or utf16_without_bom(sample):
        return None
    if sample.count(0) == len(sample):
        return "all zero bytes"
    # NUL bytes alone do not make a log binary: logrotate's copytruncate pads a log with them, and a UTF-16 chunk
    # inside a UTF-8 log is half NULs. Binary is what is left when they are dropped: control bytes, or bytes that
    # are not text in any encoding a log arrives in (random data is ~40% invalid UTF-8; Latin-1 text a few %).
    text = sample.replace(b"\0", b"")
    controls = sum(1 for b in text if b < 32 and b not in (9, 10, 12, 13, 27))  # tab, LF, FF, CR, ESC (colours)
    invalid = text.decode("utf-8", errors="replace").count("\ufffd")
    if controls > 0.05 * len(text) or invalid > 0.2 * len(text):
        return "binary data"
    return None


def decode_log(data: bytes, name: str = "the input", depth: int = 0) -> str:
    """Bytes -> text (see the module doc); UsageError for empty or binary input."""
    packed = _compression(data)
    if packed is not None and depth < 2:
        kind, unpack = packed
        try:
            inner = unpack(data)
        except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
            raise UsageError(f"{name} is {kind} data that does not unpack ({exc}); accepted: {ACCEPTED}") from None
        if len(inner) > MAX_BYTES:
            raise UsageError(f"{name} unpacks to more than {MAX_BYTES // MiB} MiB; accepted: {ACCEPTED}")
        return decode_log(inner, f"{name} ({kind})", depth + 1)
    what = describe_binary(data.lstrip(b"\0")[:SNIFF] or data[:SNIFF])
    if what is not None:
        raise UsageError(f"{name} is {what} ({len(data):,} bytes read), not a text log; accepted: {ACCEPTED}")
    codec = next((c for bom, c in BOMS if data.startswith(bom)), None) or utf16_without_bom(data[:SNIFF]) or "utf-8"
    if codec in ("utf-8", "utf-8-sig"):
        text_bytes = data.replace(b"\0", b"")  # copytruncate padding, a UTF-16 chunk's high bytes: not text
        if data and not text_bytes:
            raise UsageError(f"{name} is all zero bytes ({len(data):,} bytes read); accepted: {ACCEPTED}")
        data = text_bytes
    text = data.decode(codec, errors="replace")
    if not text.strip():
        raise UsageError(f"{name} is empty" + (f" ({len(data):,} bytes of white space)" if data else "")
                         + f"; accepted: {ACCEPTED}")
    return text


# -- streaming: the same rules over a stream, for logs.reader.read_log_stream (bounded memory) -----------------------
MAX_STREAM_BYTES = 4 << 30  # read_log_stream keeps memory bounded; past this, the input is taken for endless
OPENERS = {"gzip": lambda f: gzip.GzipFile(fileobj=f), "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}


class _Stream:
    """`read(n)` over the sniffed head and the rest of a binary stream, counting what it hands out: past `cap`
    bytes a UsageError, on a terminal a progress line every PROGRESS_BYTES."""

    def __init__(self, head: bytes, rest, name: str, cap: int | None = None, progress: bool = False):
        self.head, self.rest, self.name, self.cap, self.progress = head, rest, name, cap, progress
        self.count, self.shown = 0, 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            out, self.head = self.head + self.rest.read(), b""
        elif self.head:
            out, self.head = self.head[:n], self.head[n:]
        else:
            out = self.rest.read(n)
        self.count += len(out)
        if self.cap is not None and self.count > self.cap:
            raise UsageError(f"{self.name} is longer than {self.cap // MiB:,} MiB (an endless stream?); accepted: "
                             f"{ACCEPTED} (cut a long log to its start-up part)")
        if self.progress and self.count // PROGRESS_BYTES > self.shown:
            self.shown = self.count // PROGRESS_BYTES
            sys.stderr.write(f"\rreading {self.name}: {self.count // MiB} MiB")
        if self.progress and not out and self.shown:
            sys.stderr.write("\n")
            self.progress = False
        return out


class _Transcode:
    """`read(n)` giving UTF-8 bytes of a UTF-16/32 stream (what read_log_stream reads)."""

    def __init__(self, raw, codec: str):
        self.text = codecs.getreader(codec)(raw, errors="replace")
        self.pending = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.pending) < n:
            chunk = self.text.read(CHUNK)
            if not chunk:
                break
            self.pending += chunk.encode("utf-8")
        out, self.pending = (self.pending, b"") if n < 0 else (self.pending[:n], self.pending[n:])
        return out


def _head(stream, size: int = SNIFF) -> bytes:
    parts, got = [], 0
    while got < size:
        data = stream.read(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


NUL_RUN_CAP = 64 * MiB  # leading NUL bytes read from a stream that is not a regular file before "all zero bytes"


class _NoNul:
    """`read(n)` over a stream, without its NUL bytes (never an empty read before the end). `cap`: how many NULs
    in a row may be skipped before UsageError (None: no limit, for a regular file of known size)."""

    def __init__(self, raw, name: str, cap: int | None):
        self.raw, self.name, self.cap, self.dropped = raw, name, cap, 0

    def read(self, n: int = -1) -> bytes:
        run = 0
        while True:
            data = self.raw.read(n if n > 0 else CHUNK)
            if not data:
                return b""
            clean = data.replace(b"\0", b"")
            self.dropped += len(data) - len(clean)
            if clean:
                return clean
            run += len(data)
            if self.cap is not None and run > self.cap:
                raise UsageError(f"{self.name} is all zero bytes ({run:,} bytes read, no text); accepted: {ACCEPTED}")


def _skip_holes(fh, name: str) -> None:
    """A sparse file that starts with a hole (a log truncated by logrotate's copytruncate while vLLM kept its
    offset): seek to the first data instead of reading gigabytes of zeros; UsageError when it is all hole."""
    import errno
    import os

    if not hasattr(os, "SEEK_DATA"):
        return
    try:
        fh.seek(os.lseek(fh.fileno(), 0, os.SEEK_DATA))
    except OSError as exc:  # ENXIO: no data at all; anything else (not seekable): read from the start
        size = os.fstat(fh.fileno()).st_size
        if exc.errno == errno.ENXIO and size:
            raise UsageError(f"{name} is all zero bytes ({size:,} bytes, no data); accepted: {ACCEPTED}") from None
        fh.seek(0)


def open_log(stream, name: str, progress: bool = False, depth: int = 0, regular: bool = False):
    """A `.read(n)` stream of UTF-8 log bytes from `stream` (decompressed, transcoded, capped); UsageError for
    empty or binary input, found from its first SNIFF bytes (so /dev/zero answers at once). NUL bytes of a UTF-8
    log (copytruncate padding before it, NULs between its lines) are dropped; `regular`: `stream` is a regular
    file, so a leading run of NULs is read to its end, however long (else NUL_RUN_CAP)."""
    head = _head(stream)
    if head[:4] == b"\0\0\0\0" or (head and head.count(0) == len(head)):  # padding first: find the text
        nonul = _NoNul(_Stream(head, stream, name), name, None if regular else NUL_RUN_CAP)
        text_head = _head(nonul)
        if not text_head:
            raise UsageError(f"{name} is all zero bytes ({nonul.dropped:,} bytes read); accepted: {ACCEPTED}")
        return open_log(_Stream(text_head, nonul, name), name, progress, depth, regular)
    packed = _compression(head)
    if packed is not None and depth < 2:
        kind = packed[0]
        inner = OPENERS[kind](_Stream(head, stream, name))
        return open_log(inner, f"{name} ({kind})", progress, depth + 1)
    what = describe_binary(head)
    if what is not None:
        raise UsageError(f"{name} is {what} ({len(head):,} bytes read), not a text log; accepted: {ACCEPTED}")
    if not head.strip() and len(head) < SNIFF:
        raise UsageError(f"{name} is empty" + (f" ({len(head):,} bytes of white space)" if head else "")
                         + f"; accepted: {ACCEPTED}")
    codec = next((c for bom, c in BOMS if head.startswith(bom)), None) or utf16_without_bom(head)
    if codec is not None and codec != "utf-8-sig":
        return _Stream(b"", _Transcode(_Stream(head, stream, name), codec), name, MAX_STREAM_BYTES, progress)
    skip = len(codecs.BOM_UTF8) if codec == "utf-8-sig" else 0
    rest = _NoNul(stream, name, None) if not isinstance(stream, _Stream) else stream
    return _Stream(head[skip:].replace(b"\0", b""), rest, name, MAX_STREAM_BYTES, progress)


def read_log_input(path: str, reader, *, stdin: BinaryIO | None = None, progress: bool | None = None):
    """`reader(stream)` (e.g. logs.reader.read_log_stream) over the log at `path` or `-`, opened by open_log.

    UsageError (one line) when the file cannot be read, is no log, or its compressed data does not unpack."""
    name = "standard input" if path == "-" else repr(path)
    progress = sys.stderr.isatty() if progress is None else progress
    try:
        if path == "-":
            return reader(open_log(stdin if stdin is not None else sys.stdin.buffer, name, progress))
        regular = check_readable_file(path)
        with open(path, "rb") as fh:
            if regular:
                _skip_holes(fh, name)
            return reader(open_log(fh, name, progress, regular=regular))
    except (EOFError, lzma.LZMAError, zlib.error) as exc:
        raise UsageError(f"{name} is compressed data that does not unpack ({exc}); accepted: {ACCEPTED}") from None
    except OSError as exc:
        raise UsageError(f"cannot read log file {path!r}: {exc.strerror or exc}; accepted: {ACCEPTED}") from None
