"""Units and formatting in one place: bytes/GiB arithmetic, the GiB and token formatters, and `utc_now`.

vLLM's "GB" in old log lines is bytes / 2**30 too. Formatting happens only at the edges (CLI text, reports);
everything inside the pipeline keeps floats in GiB or ints in bytes/tokens.
"""

from __future__ import annotations

from datetime import datetime, UTC

GiB = 1 << 30
MiB = 1 << 20


def to_gib(n_bytes: float) -> float:
    """Bytes -> GiB (float)."""
    return n_bytes / GiB


def fmt_gib(x: float | None, digits: int = 2, unit: bool = True) -> str:
    """Human text for a GiB figure: `15.09 GiB`, `-` when unknown.

    A real, non-zero quantity never prints as `0.00`: below 10**-digits it keeps two significant digits
    (`0.0041 GiB`). `unit=False` drops the ` GiB` suffix (table cells whose header names the unit).
    """
    if x is None:
        return "-"
    text = f"{x:.{digits}f}"
    if x != 0 and float(text) == 0.0:
        text = f"{x:.2g}"
    return f"{text} GiB" if unit else text


gib = fmt_gib  # the historical name


def fmt_tokens(n: int | None) -> str:
    """Token (or block / item) counts with thousands separators: `63,632`; `-` when unknown."""
    return "-" if n is None else f"{int(n):,}"


def plural(n: int, word: str, plural_form: str | None = None) -> str:
    """`1 combination`, `2 combinations`, `1 slice` — English agreement in one place."""
    return f"{n} {word if n == 1 else (plural_form or word + 's')}"


def utc_now(timespec: str = "seconds") -> str:
    """The current UTC time as ISO 8601 with a `Z`: `2026-11-30T15:54:18Z` (timespec as datetime.isoformat)."""
    return datetime.now(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def fmt_error(err: float | None) -> str:
    """A relative error (0.123) as a signed percentage ("+12.3%"); "-" when unknown."""
    return "-" if err is None else f"{err * 100:+.1f}%"
