"""The terminal summary of a sweep (pytest's summary section): one row per combination of results.jsonl."""

from __future__ import annotations

import json

from diagnostics.report.content import plan_accuracy
from diagnostics.units import fmt_error, fmt_gib

SUMMARY_HEADERS = ("id", "outcome", "expected", "peak dev GiB", "peak proc GiB", "profile GiB", "KV GiB",
                   "KV tokens", "start-up s", "result", "culprit")


def _num(x: float | None, digits: int = 2) -> str:
    return fmt_gib(x, digits, unit=False)


def summary_row(r: dict) -> tuple:
    """One results.jsonl record as a table row (GiB columns without the unit, `-` for unknown)."""
    culprits = (r.get("diagnosis") or {}).get("culprits") or []
    culprit = ", ".join(f"{c['setting']}={json.dumps(c.get('value'))}->{json.dumps(c.get('suggested'))}"
                        for c in culprits[:2]) or "-"
    return (r.get("id"), r.get("outcome"), r.get("expected") or "-", _num(r.get("peak_device_gib")),
            _num(r.get("peak_process_gib")), _num(r.get("profile_peak_gib")), _num(r.get("kv_cache_gib")),
            r.get("kv_cache_tokens") or "-", _num(r.get("startup_s"), 1),
            r.get("status") or ("passed" if r.get("passed") else "failed"), culprit)


def summary_table(results: list[dict]) -> str:
    """One row per combination (the terminal summary), laid out by tabulate."""
    from tabulate import tabulate  # optional at import time: only the summary needs it

    return tabulate([summary_row(r) for r in results], headers=SUMMARY_HEADERS, tablefmt="simple")


ACCURACY_HEADERS = ("id", "plan verdict", "outcome", "figure", "plan", "actual", "source", "error")


def accuracy_table(results: list[dict]) -> str:
    """plan's prediction beside what vLLM printed / the launcher measured, one row per figure, and the line
    "plan's verdict right for N of M starts" on top."""
    from tabulate import tabulate  # optional at import time, as in summary_table

    rows = []
    for r in results:
        verdict = (r.get("prediction") or {}).get("verdict") or "-"
        for c in r.get("accuracy") or []:
            rows.append((r.get("id"), verdict, r.get("outcome"), c["figure"], c["predicted"], c["actual"],
                         c["source"], fmt_error(c["error"])))
    head = plan_accuracy(results)["line"]
    return head if not rows else head + "\n" + tabulate(rows, headers=ACCURACY_HEADERS, tablefmt="simple")


SPREAD_HEADERS = ("id", "cache", "starts", "peak GiB min / median / max", "KV tokens min / median / max",
                  "start-up s min / median / max")


def _spread_cell(sp: dict | None, digits: int) -> str:
    if not sp:
        return "-"
    fmt = (lambda x: f"{x:,.0f}") if digits == 0 else (lambda x: f"{x:.{digits}f}")
    return f"{fmt(sp['min'])} / {fmt(sp['median'])} / {fmt(sp['max'])} ({sp['relative'] * 100:.1f}%)"


def spread_table(results: list[dict]) -> str | None:
    """The spread of the combinations started more than once (--repeat, results.with_repeats): min / median / max
    and the relative spread (max - min) / median of each gated figure; None when no record has repeats."""
    from tabulate import tabulate  # optional at import time, as in summary_table

    rows = []
    for r in results:
        repeat = r.get("repeat") or {}
        figures = repeat.get("figures") or {}
        if repeat.get("n", 1) > 1:
            rows.append((r.get("id"), r.get("cache_state") or "-", repeat["n"], _spread_cell(figures.get("peak"), 2),
                         _spread_cell(figures.get("kv_tokens"), 0), _spread_cell(figures.get("startup"), 1)))
    return tabulate(rows, headers=SPREAD_HEADERS, tablefmt="simple") if rows else None
