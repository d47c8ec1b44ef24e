"""Line normalisation: whatever shape a log was pasted in, every pattern sees vLLM's message body alone.

Taken off, in this order: ANSI colours (also with their escape byte lost), Markdown quote bars (`> `, `▎ `, `| `),
container-runtime / docker / journald / docker-compose prefixes (CRI partial records `P` are joined to the record
that completes them), quote bars again (inside a container log), then vLLM's own `(EngineCore pid=N)` (also without its `(`) / `[rank0]:` tags and the
`INFO mm-dd hh:mm:ss [file.py:N]` header. Markdown fences, blank lines and `#` comments are dropped; tqdm `\\r`
pieces become lines. A line with no header, no tag and no indent that follows a message is marked `cont`: it may
be the rest of that message, wrapped by the paste (the reader then also reads the two as one).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from diagnostics.logs import patterns as P


@dataclass
class Line:
    """One log line: `raw` as vLLM printed it (paste disguises taken off), `body` without vLLM's prefix."""

    index: int
    raw: str
    body: str
    level: str | None
    ts: str | None
    process: str | None
    cont: bool = False  # may continue the previous line (a wrapped message)
    engine: str | None = None  # which engine of several printed it: `Stage-0`, `DP1`, `APIServer pid=N` (engine_of)


def engine_of(piece: str, process: str | None) -> str | None:
    """The engine a line belongs to when one log holds several: vllm-omni's `[Stage-N]` tag, a data-parallel rank
    in the process name (`EngineCore_DP1`, `Worker_DP6_EP6`), else the engine core's or the API server's pid
    (`vllm serve` run twice). Scan.engine_records splits a log only when two engines show (API-server lines are
    shared when engine cores or finer tags are there)."""
    head = piece[:160]
    if m := P.STAGE_TAG.search(head):
        return f"Stage-{m.group('stage')}"
    if m := P.ENGINE_DP.search(head):
        return f"DP{m.group('dp')}"
    if process and process.startswith(("APIServer ", "EngineCore pid=")):
        return process  # two `vllm serve` processes: each has its API server and its engine core
    return None


def _strip_tags(piece: str) -> tuple[str, str | None]:
    """(text after the process / rank tag, `Name pid=N` or `rankN` or None)."""
    rest, process = piece, None
    tag = P.PROCESS_TAG.search(rest)
    if tag is None or tag.start() >= 60:
        tag = P.PROCESS_TAG_BARE.match(rest)
    if tag is not None and tag.start() < 60:
        process = f"{tag.group('name') or 'process'} pid={tag.group('pid')}"
        rest = rest[tag.end():]
    if (stage := P.STAGE_TAG.match(rest.lstrip(" "))) is not None:  # vllm-omni: `(Worker pid=N) [Stage-0] INFO`
        rest = rest.lstrip(" ")[stage.end():].lstrip(" ")
        if (more := P.PROCESS_TAG.match(rest)) is not None and process is None:
            process = f"{more.group('name') or 'process'} pid={more.group('pid')}"
            rest = rest[more.end():].lstrip(" ")
    rank = P.RANK_TAG.search(rest)
    if rank and rank.start() < 40:
        process = process or f"rank{rank.group('rank')}"
        rest = rest[rank.end():]
    if process and rest.startswith(" ") and not rest.startswith("  "):
        rest = rest[1:]  # the space after a `(Name pid=N)` / `[rank0]:` tag; frame indents stay
    return rest, process


# What a web page or a word processor makes of plain text: no-break spaces, typographic quotes, HTML entities.
TYPOGRAPHY = str.maketrans({"\xa0": " ", "\u202f": " ", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def undisguise(physical: str) -> tuple[str, bool]:
    """(the line without ANSI codes, container / journald / compose prefixes and quote bars, is a CRI partial)."""
    text = P.ANSI.sub("", physical) if "[" in physical else physical
    if not text.isascii():
        text = text.translate(TYPOGRAPHY)
    if "&" in text and ";" in text:
        text = html.unescape(text)  # `model&#39;s`, `&gt;` from a page's source
    partial = False
    for pattern in (P.QUOTE, P.CONTAINER, P.QUOTE):  # a quoted paste of a container log, or quotes inside one
        if m := pattern.match(text):
            partial = partial or (pattern is P.CONTAINER and m.group("cri") == "P")
            text = text[m.end():]
    return text, partial


def _split_joined(text: str) -> list[str]:
    """A line that holds several vLLM lines (a paste lost its line ends), cut before every header after the first."""
    first = P.HEADER.search(text)
    if first is None:
        return [text]
    pieces, start = [], 0
    for m in P.EMBEDDED_HEADER.finditer(text, first.end()):
        pieces.append(text[start:m.start()])
        start = m.end()
    return pieces + [text[start:]]


def _starts_message(body: str) -> bool:
    """A line that begins something of its own: a traceback, a frame, an indented code line, an exception."""
    return (not body or body[0] in " \t^~" or body.startswith(("Traceback", "File \"", "During handling", "The above"))
            or bool(P.EXCEPTION.match(body)))


class LineSplitter:
    """Turns physical lines into Lines one at a time (`feed`), keeping what a stream needs between them: the last
    time stamp (a line without one carries it), a CRI partial record, whether the previous line was a message."""

    def __init__(self):
        self.index = 0
        self.last_ts: str | None = None
        self.partial = ""
        self.after_message = False

    def feed(self, physical: str) -> Iterator[Line]:
        text, partial = undisguise(physical.rstrip("\n"))
        if partial:
            self.partial += text
            return
        text, self.partial = self.partial + text, ""
        if P.FENCE.match(text):
            self.after_message = False
            return
        pieces = [piece for part in text.split("\r") if part.strip()  # tqdm redraws; CRLF's empty tail
                  for piece in _split_joined(part)]
        if not pieces:
            self.after_message = False  # a blank line ends a message
        for piece in pieces:
            if piece.startswith("#") and not P.GPU_BLOCKS.match(piece):
                continue  # a comment (fixtures, annotated pastes); vLLM's only `#` line is `# GPU blocks`
            yield self._line(piece)

    def _line(self, piece: str) -> Line:
        rest, process = _strip_tags(piece)
        header = P.HEADER.search(rest)
        level = None
        if header and header.start() < 120:
            level, self.last_ts = header.group("level"), header.group("ts") or self.last_ts
            rest = rest[header.end():]
        body = rest.rstrip()
        cont = self.after_message and level is None and process is None and not _starts_message(body)
        self.after_message = bool(body) and body[0] not in " \t"
        raw = piece.rstrip()
        if process and P.PROCESS_TAG_BARE.match(raw):
            raw = "(" + raw  # the tag as vLLM printed it
        line = Line(self.index, raw, body, level, self.last_ts, process, cont, engine_of(piece, process))
        self.index += 1
        return line


def iter_lines(physical: Iterable[str]) -> Iterator[Line]:
    """Lines from physical lines (each without or with its newline), one at a time."""
    splitter = LineSplitter()
    for line in physical:
        yield from splitter.feed(line)


def split_lines(text: str) -> list[Line]:
    """All Lines of a text (see the module docstring). A line without its own time stamp carries the last one seen
    (`Line.ts`, `mm-dd hh:mm:ss`)."""
    return list(iter_lines(text.split("\n")))
