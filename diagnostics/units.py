"""Byte/GiB arithmetic in one place (vLLM's "GB" in old log lines is bytes / 2**30 too)."""

from __future__ import annotations

GiB = 1 << 30
MiB = 1 << 20


def to_gib(n_bytes: float) -> float:
    return n_bytes / GiB


def gib(x: float | None, digits: int = 2) -> str:
    """Human text for a GiB figure: `15.09 GiB`, or `-` when unknown."""
    return "-" if x is None else f"{x:.{digits}f} GiB"
