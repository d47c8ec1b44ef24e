"""diagnostics.logs.source: every form a log arrives in is read; what is not a log is named in one line."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re

import pytest

from diagnostics.logs import source as textinput
from diagnostics.errors import UsageError
from diagnostics.logs.source import decode_log, describe_binary, read_log_input, read_text_input, utf16_without_bom

TEXT = "INFO 11-24 14:05:44 [core.py:402] init engine took 0.04 s\nERROR torch.OutOfMemoryError: CUDA out of memory\n"


@pytest.mark.parametrize("data", [
    TEXT.encode(), b"\xef\xbb\xbf" + TEXT.encode(), TEXT.encode("utf-16"), TEXT.encode("utf-16-le"),
    TEXT.encode("utf-16-be"), TEXT.encode("utf-32"), gzip.compress(TEXT.encode()), bz2.compress(TEXT.encode()),
    lzma.compress(TEXT.encode()), gzip.compress(TEXT.encode("utf-16")),
], ids=["utf8", "utf8-bom", "utf16-bom", "utf16le", "utf16be", "utf32-bom", "gzip", "bz2", "xz", "gzip-utf16"])
def test_every_form_decodes_to_the_same_text(data):
    assert decode_log(data).lstrip("\ufeff") == TEXT


def test_invalid_utf8_is_replaced_not_fatal():
    assert decode_log(b"host caf\xe9\n" + TEXT.encode()).endswith(TEXT)


@pytest.mark.parametrize("data, says", [
    (b"", "the input is empty; accepted:"),
    (b" \n\t\n", "the input is empty (4 bytes of white space); accepted:"),
    (b"\0" * 100, "the input is all zero bytes (100 bytes read), not a text log"),
    (b"\x89PNG\r\n\x1a\n" + bytes(300), "the input is a PNG image"),
    (b"\x7fELF" + bytes(300), "an executable (ELF)"),
    (b"PK\x03\x04" + bytes(300), "a zip archive (unpack it and pass the log inside)"),
    (bytes(range(256)) * 4, "the input is binary data (1,024 bytes read)"),
    (b"\x1f\x8b" + b"not really gzip", "the input is gzip data that does not unpack"),
])
def test_what_is_not_a_log_is_named(data, says):
    with pytest.raises(UsageError) as err:
        decode_log(data)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_utf16_detection_needs_nuls_on_one_side_only():
    assert utf16_without_bom("abcd".encode("utf-16-le")) == "utf-16-le"
    assert utf16_without_bom("abcd".encode("utf-16-be")) == "utf-16-be"
    assert utf16_without_bom(b"abcd") is None and utf16_without_bom(bytes(8)) is None
    assert describe_binary(b"\x1b[32mINFO\x1b[0m colours are text\n") is None


def test_a_stream_of_zeros_stops_after_the_first_chunk():
    class Endless(io.RawIOBase):
        reads = 0

        def read(self, n=-1):
            Endless.reads += 1
            return bytes(n)

    with pytest.raises(UsageError, match="standard input is all zero bytes"):
        read_text_input("-", stdin=Endless(), progress=False)
    assert Endless.reads == 1


def test_an_endless_text_stream_is_refused_at_the_cap(monkeypatch):
    monkeypatch.setattr(textinput, "MAX_BYTES", 3 * textinput.CHUNK)

    class Yes(io.RawIOBase):
        def read(self, n=-1):
            return (b"y\n" * (n // 2))

    with pytest.raises(UsageError, match=r"standard input is longer than 3 MiB \(an endless stream\?\)"):
        read_text_input("-", stdin=Yes(), progress=False)


def test_long_input_shows_progress_on_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(textinput, "PROGRESS_BYTES", textinput.CHUNK)
    data = (TEXT * (3 * textinput.CHUNK // len(TEXT) + 1)).encode()
    assert read_text_input("-", stdin=io.BytesIO(data), progress=True).startswith(TEXT)
    err = capsys.readouterr().err
    assert "\rreading standard input: 1 MiB" in err and err.endswith("\n")
    read_text_input("-", stdin=io.BytesIO(data), progress=False)
    assert capsys.readouterr().err == ""


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(UsageError, match=r"cannot read log file '.*nope.log': No such file or directory; accepted"):
        read_text_input(str(tmp_path / "nope.log"))


# -- the streaming path (what `explain` uses: logs.reader.read_log_stream reads the stream in bounded memory) ----------
def read_all(stream) -> bytes:
    parts = []
    while chunk := stream.read(7):  # small reads: the head, the transcoder and the rest must join up
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.parametrize("data", [
    TEXT.encode(), b"\xef\xbb\xbf" + TEXT.encode(), TEXT.encode("utf-16"), TEXT.encode("utf-16-le"),
    TEXT.encode("utf-16-be"), gzip.compress(TEXT.encode()), bz2.compress(TEXT.encode()),
    lzma.compress(TEXT.encode()), gzip.compress(TEXT.encode("utf-16")),
], ids=["utf8", "utf8-bom", "utf16-bom", "utf16le", "utf16be", "gzip", "bz2", "xz", "gzip-utf16"])
def test_every_form_streams_as_utf8(tmp_path, data):
    path = tmp_path / "vllm.log"
    path.write_bytes(data)
    assert read_log_input(str(path), read_all, progress=False).decode("utf-8") == TEXT
    assert read_log_input("-", lambda s: s.read(-1), stdin=io.BytesIO(data), progress=False).decode() == TEXT


@pytest.mark.parametrize("data, says", [
    (b"", "is empty"), (b"\0" * 100, "is all zero bytes"), (bytes(range(256)) * 4, "is binary data"),
    (gzip.compress(b"", mtime=0), "(gzip) is empty"),
], ids=["empty", "zeros", "binary", "gzip-empty"])  # stable ids: pytest-xdist workers must collect the same tests
def test_the_stream_refuses_what_is_not_a_log_before_reading_it(data, says):
    with pytest.raises(UsageError, match=rf"standard input.*{re.escape(says)}"):
        read_log_input("-", read_all, stdin=io.BytesIO(data), progress=False)


def test_the_stream_is_capped_and_shows_progress(monkeypatch, capsys):
    monkeypatch.setattr(textinput, "MAX_STREAM_BYTES", 5 * textinput.CHUNK)
    monkeypatch.setattr(textinput, "PROGRESS_BYTES", textinput.CHUNK)

    class Yes(io.RawIOBase):
        def read(self, n=-1):
            return b"y\n" * (max(n, 2) // 2)

    with pytest.raises(UsageError, match=r"standard input is longer than 5 MiB \(an endless stream\?\)"):
        read_log_input("-", read_all_big, stdin=Yes(), progress=True)
    assert "\rreading standard input: 1 MiB" in capsys.readouterr().err


def read_all_big(stream) -> int:
    total = 0
    while chunk := stream.read(1 << 20):
        total += len(chunk)
    return total


# -- newcomer-3 defect 10 and #1, #10, #16, #19, #354-#356: readable logs are read, a FIFO is refused ----------
def _explain(path) -> str:
    from diagnostics.logs.reader import read_log_stream

    return read_log_input(str(path), read_log_stream).outcome


OOM = (__import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "logs" / "gpu_v063_profile_vision_oom.log")


@pytest.mark.parametrize("nuls", [4096, 8192, 65536])
def test_a_log_after_copytruncate_nul_padding_is_read(tmp_path, nuls):
    (tmp_path / "l.log").write_bytes(b"\0" * nuls + OOM.read_bytes())
    assert _explain(tmp_path / "l.log") == "oom_profile"
    assert decode_log(b"\0" * nuls + OOM.read_bytes()).startswith("# fixture")


def test_nuls_between_lines_and_mixed_encodings_are_read(tmp_path):
    lines = OOM.read_text().split("\n")
    (tmp_path / "nul.log").write_bytes("\n\0".join(lines).encode())
    mixed = (lines[0].encode() + b"\n" + "INFO host caf\xe9 started".encode("latin-1") + b"\n"
             + "\n".join(lines[1:4]).encode("utf-16-le") + b"\n" + "\n".join(lines[4:]).encode())
    (tmp_path / "mixed.log").write_bytes(mixed)
    assert _explain(tmp_path / "nul.log") == "oom_profile" and _explain(tmp_path / "mixed.log") == "oom_profile"
    assert describe_binary(mixed[:8192]) is None and describe_binary(bytes(range(256)) * 16) == "binary data"


def test_a_sparse_log_that_starts_with_a_hole_is_read_and_an_all_hole_one_refused(tmp_path):
    hole = tmp_path / "hole.log"
    with open(hole, "wb") as f:
        f.truncate(1 << 30)
    with pytest.raises(UsageError, match="is all zero bytes"):
        _explain(hole)
    with open(hole, "ab") as f:
        f.write(OOM.read_bytes())
    assert _explain(hole) == "oom_profile"


def test_a_fifo_is_refused_in_one_line_not_waited_on(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo")
    for read in (lambda p: _explain(p), read_text_input):
        with pytest.raises(UsageError, match=r"is a FIFO \(named pipe\), not a file: reading it would wait"):
            read(str(tmp_path / "fifo"))
