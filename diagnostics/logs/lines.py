"""Line normalisation: ANSI colours, tqdm `\\r` pieces, `(EngineCore pid=N)` / `[rank0]:` tags and the
`INFO mm-dd hh:mm:ss [file.py:N]` header are taken off, so every pattern sees the message body alone."""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.logs import patterns as P


@dataclass
class Line:
    """One physical log line (tqdm `\\r` segments split apart) with its prefix removed."""

    index: int
    raw: str
    body: str
    level: str | None
    ts: str | None
    process: str | None


def _strip_tags(piece: str) -> tuple[str, str | None]:
    """(text after the process / rank tag, `Name pid=N` or `rankN` or None)."""
    rest, process = piece, None
    tag = P.PROCESS_TAG.search(rest)
    if tag and tag.start() < 60:
        process = f"{tag.group('name')} pid={tag.group('pid')}"
        rest = rest[tag.end():]
    rank = P.RANK_TAG.search(rest)
    if rank and rank.start() < 40:
        process = process or f"rank{rank.group('rank')}"
        rest = rest[rank.end():]
    if process and rest.startswith(" ") and not rest.startswith("  "):
        rest = rest[1:]  # the space after a `(Name pid=N)` / `[rank0]:` tag; frame indents stay
    return rest, process


def split_lines(text: str) -> list[Line]:
    """Physical lines; tqdm `\\r` pieces become lines; prefixes and the level/time header are removed.

    A line without its own time stamp carries the last one seen (`Line.ts`, `mm-dd hh:mm:ss`)."""
    out: list[Line] = []
    last_ts: str | None = None
    for physical in P.ANSI.sub("", text).split("\n"):
        for piece in physical.split("\r"):
            if not piece.strip() or (piece.startswith("#") and not P.GPU_BLOCKS.match(piece)):
                continue  # blank, or a comment (fixtures, annotated pastes); vLLM's only `#` line is `# GPU blocks`
            rest, process = _strip_tags(piece)
            header = P.HEADER.search(rest)
            level = None
            if header and header.start() < 120:
                level, last_ts = header.group("level"), header.group("ts") or last_ts
                rest = rest[header.end():]
            out.append(Line(len(out), piece, rest.rstrip(), level, last_ts, process))
    return out
