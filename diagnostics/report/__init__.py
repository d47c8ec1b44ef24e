"""Reports of a sweep for issue threads: Markdown, JSON, HTML and PNG charts, all redacted.

`write_reports(run_dir)` builds the report once (report/content.py: redacted dict) and lays it out:
report.md, report.json, report.html and charts/*.png in the run directory (or out_dir).
"""

from __future__ import annotations

from pathlib import Path

from diagnostics.errors import UsageError, one_of
from diagnostics.redact import Redactor
from diagnostics.report.content import build_report, resolve_source
from diagnostics.report.html import render_html
from diagnostics.report.jsonreport import render_json
from diagnostics.report.markdown import render_markdown

FORMATS = ("md", "json", "html", "png")
FILE_NAMES = {"md": "report.md", "json": "report.json", "html": "report.html"}


def parse_formats(text: str) -> tuple[str, ...]:
    """`md`, `json,html`, `all` -> formats; UsageError names the bad one."""
    if text.strip() == "all":
        return FORMATS
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    for f in formats:
        if f not in FORMATS:
            raise one_of("report format", f, FORMATS + ("all",))
    if not formats:
        raise UsageError("no report format given; accepted: md, json, html, png, all")
    return formats


def write_reports(run_dir, formats=FORMATS, out_dir=None, redactor=None) -> list[Path]:
    """Write the requested formats; returns the files written. HTML embeds the PNGs, so it writes them too."""
    for f in formats:
        if f not in FORMATS:
            raise one_of("report format", f, FORMATS)
    red = redactor or Redactor.for_this_machine()
    source_dir, _ = resolve_source(run_dir)
    out = Path(out_dir) if out_dir is not None else source_dir
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(run_dir, red)
    written: list[Path] = []
    if "md" in formats:
        written.append(_write(out / FILE_NAMES["md"], red.text(render_markdown(report))))
    if "json" in formats:
        written.append(_write(out / FILE_NAMES["json"], render_json(report)))
    if "png" in formats or "html" in formats:
        from diagnostics.report.charts import write_charts  # matplotlib: only when charts are asked for

        written.extend(write_charts(report, source_dir, out, red))
    if "html" in formats:
        written.append(_write(out / FILE_NAMES["html"], render_html(report)))
    return written


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
