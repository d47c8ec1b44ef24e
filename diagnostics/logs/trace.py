"""Why the reader answered what it did (`explain --trace`): for the outcome, the phase, the engine and each figure,
the rule (a regex of diagnostics.logs.patterns and its row of the message catalogue, diagnostics/data/
log_messages.toml) and the log line that decided it, from LogRecord.provenance."""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path

from diagnostics.logs import patterns as P

CATALOGUE = Path(__file__).resolve().parents[1] / "data" / "log_messages.toml"


@functools.lru_cache(maxsize=1)
def catalogue() -> tuple[dict, ...]:
    """The catalogue's rows (`[[message]]` tables), in file order."""
    return tuple(tomllib.loads(CATALOGUE.read_text())["message"])


def row_for(body: str, key: str | None = None) -> dict | None:
    """The catalogue row whose rule matches `body` (a line without its prefix) and, when given, whose figures hold
    `key` (`weights_gib`, `setting:max_model_len`); for `key` "outcome", one that decides an outcome; else the
    first whose rule matches."""
    matching = [r for r in catalogue() if isinstance(getattr(P, r["rule"], None), re.Pattern)
                and getattr(P, r["rule"]).search(body)]
    if key == "outcome":
        matching = [r for r in matching if r.get("outcome")] + [r for r in matching if not r.get("outcome")]
        key = None
    if key is not None and key.startswith("figure:oom_"):  # the allocator's text, wherever a vLLM line wraps it
        matching = [r for r in matching if r["section"] == "torch"] + [r for r in matching if r["section"] != "torch"]
    if key is not None:
        for r in matching:
            if key in r["figures"] or key.removeprefix("figure:") in r["figures"]:
                return r
    return matching[0] if matching else None


def _body(raw: str) -> str:
    from diagnostics.logs.lines import split_lines  # a line as the rules see it

    lines = split_lines(raw)
    return lines[0].body if lines else raw


def _entry(item: str, value, why: dict | None, lines: dict) -> dict:
    out = {"item": item, "value": value, "how": None, "rule": None, "catalogue": None, "line_number": None,
           "line": None}
    if not why:
        out["how"] = "nothing in the log decided it"
        return out
    out["how"] = why.get("how")
    index = why.get("line")
    if index is not None and index in lines:
        raw = lines[index]
        out["line_number"], out["line"] = index + 1, raw
        row = row_for(_body(raw), item if item.startswith(("figure:", "setting:", "outcome")) else None)
        if row is not None:
            out["catalogue"] = row["id"]
            out["rule"] = row["rule"]
    if why.get("rule"):
        out["rule"] = why["rule"]
    return out


def trace(record) -> list[dict]:
    """[{"item", "value", "how", "rule", "catalogue", "line_number", "line"}] for the outcome, the phase, the
    engine (V0/V1 and, in a log of several engines, which one failed) and every figure and echoed setting.
    `line_number` is 1-based over the lines the reader kept (blank lines and fences dropped)."""
    prov = record.provenance or {}
    lines = prov.get("lines") or {}
    out = [_entry("outcome", record.outcome, prov.get("outcome"), lines),
           _entry("phase", record.phase, prov.get("phase"), lines),
           _entry("engine", record.engine, prov.get("engine"), lines)]
    if record.failed_engine is not None:
        out.append(_entry("failed_engine", record.failed_engine, prov.get("failed_engine"), lines))
    for key, value in record.numbers.items():
        if not key.endswith("_all"):
            out.append(_entry(f"figure:{key}", value, prov.get(f"figure:{key}"), lines))
    for key, value in record.settings.items():
        out.append(_entry(f"setting:{key}", value, prov.get(f"setting:{key}"), lines))
    return out
