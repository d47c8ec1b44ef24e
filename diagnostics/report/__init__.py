"""Reports for issue threads, all redacted and under GitHub's 65,536-character limit.

`write_reports(run_dir)` builds a sweep's report once (report/content.py: redacted dict) and lays it out:
report.md, report.json, report.html and charts/*.png in the run directory (or out_dir); report-full.md
beside report.md when report.md was shortened to fit one GitHub comment (it links it).
`log_markdown(record, answer)` (explain --format md) and `plan_markdown(plan, explanation)` (plan --format md)
build one start's report (report/single.py) and lay it out with the same renderer (report/markdown.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from diagnostics.errors import UsageError, one_of
from diagnostics.redact import Redactor
from diagnostics.report.benchmark import render_benchmark
from diagnostics.report.content import build_report, resolve_source
from diagnostics.report.html import render_html
from diagnostics.report.jsonreport import render_json
from diagnostics.report.markdown import FULL_NAME, fit_sweep, fit_to_limit, render_log_markdown, render_plan_markdown
from diagnostics.report.single import log_report, plan_report

FORMATS = ("md", "json", "html", "png", "benchmark")
ALL_FORMATS = ("md", "json", "html", "png")  # `all`: the paste-ready reports; benchmark (dashboards) when named
SINGLE_FORMATS = ("text", "json", "md")  # explain and plan: one start's answer
FILE_NAMES = {"md": "report.md", "json": "report.json", "html": "report.html"}


def parse_formats(text: str) -> tuple[str, ...]:
    """`md`, `json,html`, `all` -> formats; UsageError names the bad one."""
    if text.strip() == "all":
        return ALL_FORMATS
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    if "all" in formats:  # `all,md` is all of them (md included)
        return FORMATS
    for f in formats:
        if f not in FORMATS:
            raise one_of("report format", f, FORMATS + ("all",))
    if not formats:
        raise UsageError(f"no report format given; accepted: {', '.join(FORMATS)}, all")
    return formats


def write_reports(run_dir, formats=ALL_FORMATS, out_dir=None, redactor=None) -> list[Path]:
    """Write the requested formats; returns the files written. HTML embeds the PNGs, so it writes them too."""
    for f in formats:
        if f not in FORMATS:
            raise one_of("report format", f, FORMATS)
    red = redactor or Redactor.for_this_machine()
    source_dir, _ = resolve_source(run_dir)
    out = Path(out_dir) if out_dir is not None else source_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, a read-only place: one line, before anything is built
        why = "it exists and is not a directory" if out.exists() and not out.is_dir() else exc.strerror or exc
        raise UsageError(f"cannot write reports to {str(out)!r}: {why}; accepted: a directory this "
                         "user can write (created when missing)") from None
    report = build_report(run_dir, red)
    written: list[Path] = []
    if "md" in formats:
        md, full = fit_sweep(report, red.text)
        written.append(_write(out / FILE_NAMES["md"], md))
        if full is not None:  # report.md had to shrink: the rest goes in the file it links
            written.append(_write(out / FULL_NAME, full))
        else:
            (out / FULL_NAME).unlink(missing_ok=True)  # a rewrite that fits must not leave a stale one linked
    if "json" in formats:
        written.append(_write(out / FILE_NAMES["json"], render_json(report)))
    if "png" in formats or "html" in formats:
        from diagnostics.report.charts import write_charts  # matplotlib: only when charts are asked for

        written.extend(write_charts(report, source_dir, out, red))
    if "html" in formats:
        written.append(_write(out / FILE_NAMES["html"], render_html(report, base=out)))
    if "benchmark" in formats:  # github-action-benchmark's customSmallerIsBetter / customBiggerIsBetter files
        written.extend(_write(out / name, text) for name, text in render_benchmark(report).items())
    return written


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def log_markdown(record, answer: dict, model=None, card=None, redactor: Redactor | None = None) -> str:
    """`explain --format md`: the redacted Markdown report of one log (record: LogRecord, answer: the culprits,
    summary and fix of commands.explain.explain). UsageError for an unknown model or card."""
    red = redactor or Redactor.for_this_machine()
    content = log_report(record, answer, model=model, card=card, redactor=red)
    return fit_to_limit(lambda keep: red.text(render_log_markdown(content, keep)))


def plan_markdown(plan, explanation=None, fits=None, redactor: Redactor | None = None) -> str:
    """`plan --format md`: the redacted Markdown report of one prediction (and of a --fit search's plans)."""
    red = redactor or Redactor.for_this_machine()
    content = plan_report(plan, explanation, fits=fits, redactor=red)
    return fit_to_limit(lambda keep: red.text(render_plan_markdown(content, keep)))


def emit(text: str, out=None) -> None:
    """Print `text`, or write it to the file `out` (UsageError naming the file when it cannot be written)."""
    if out is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {str(out)!r}: {exc.strerror or exc}; accepted: a writable file path") from None


def check_writable(out, option: str) -> None:
    """Before any work: UsageError naming `option` when the file `out` could not be written (a missing or
    read-only directory, a directory of that name). Nothing is created or changed."""
    if out is None:
        return
    path = Path(out)
    parent = path.parent if str(path.parent) else Path(".")
    problem = ("is a directory" if path.is_dir() else "its directory does not exist" if not parent.is_dir()
               else "its directory is not writable" if not os.access(parent, os.W_OK)
               else "the file is not writable" if path.exists() and not os.access(path, os.W_OK) else None)
    if problem:
        raise UsageError(f"{option} {str(out)!r}: {problem}; accepted: a writable file path")


def output_format(json_flag: bool, fmt: str | None) -> str:
    """explain/plan: `--json` is `--format json`; `--json` with another --format is a UsageError."""
    if json_flag and fmt not in (None, "json"):
        raise UsageError(f"--json and --format {fmt} disagree; accepted: --json or --format "
                         + "|".join(SINGLE_FORMATS))
    return "json" if json_flag else (fmt or "text")
