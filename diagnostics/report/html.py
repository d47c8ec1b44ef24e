"""Standalone HTML page with the Markdown report's content and the PNG charts embedded (relative paths)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from diagnostics.report.markdown import (
    ACCURACY_HEADERS,
    TABLE_HEADERS,
    accuracy_rows,
    environment_rows,
    failures,
    suggested_settings,
    table_rows,
)

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 960px; margin: 2em auto;
       padding: 0 1em; color: #1f2328; line-height: 1.5; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 12px; }
code { background: #f6f8fa; padding: 0 3px; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: 0.5em 0; }
.fail { color: #cf222e; } .ok { color: #1a7f37; } footer { color: #57606a; font-size: 12px; margin-top: 3em; }
"""


def _table(headers: list[str], rows: list[list[str]], numeric_from: int = 99) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{escape(v)}</td>' if i >= numeric_from else f"<td>{escape(v)}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _code_to_html(text: str) -> str:
    """Escape text and turn `code` spans (as the Markdown suggestions use them) into <code>."""
    parts = text.split("`")
    return "".join(escape(p) if i % 2 == 0 else f"<code>{escape(p)}</code>" for i, p in enumerate(parts))


def _image(src: str, base: Path | None) -> str:
    """A chart as a data: URI (base64 PNG) when it can be read under `base`, so report.html is one file;
    else its relative path."""
    path = base / src if base is not None else None
    if path is not None and path.is_file():
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return escape(src)


def _search_html(summary: dict) -> list[str]:
    """The limit search (markdown.search_section's content): measured vs predicted, then each probe."""
    rows = [[str(i), str(p["value"]), "starts" if p["fits"] else "fails (a probe above the limit: expected)"]
            for i, p in enumerate(summary.get("probes") or [], 1)]
    out = [f"<h2>Limit search: {escape(str(summary['setting']))} on {escape(str(summary['card']))}</h2>",
           f"<p>Measured limit <strong>{escape(str(summary['limit']))}</strong> (largest value that started, "
           f"resolution {escape(str(summary['resolution']))}); predicted {escape(str(summary['predicted']))} "
           f"({escape(str(summary['prediction_note']))}).</p>",
           f"<p>{escape(str(summary['starts']))} engine starts for a grid of {escape(str(summary['grid']))} values "
           f"({escape(str(summary['lo']))}..{escape(str(summary['hi']))}).</p>",
           _table(["start", "value", "result"], rows, numeric_from=1)]
    if summary.get("contradictions"):
        out.append(f"<p>Warning: a start above a failed one came up: {escape(str(summary['contradictions']))}.</p>")
    return out


def render_html(report: dict, with_charts: bool = True, base: Path | None = None) -> str:
    """The report as one HTML page; with `base` (where the charts were written) the PNGs are embedded."""
    title = f"vLLM start-up memory report: run {report['run']}"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{escape(title)}</h1>", f"<p><strong>Verdict.</strong> {escape(report['verdict'])}</p>"]
    accuracy = report.get("plan_accuracy") or {}
    if accuracy:  # what report.md says too: how well plan called the run
        out.append(f"<p><strong>Prediction.</strong> {escape(accuracy['line'])}.</p>")
    out += ["<h2>Environment</h2>", _table(["", "value"], environment_rows(report)),
            "<h2>Combinations</h2>", _table(TABLE_HEADERS, table_rows(report), numeric_from=2)]
    if accuracy.get("rows"):
        out += ["<h2>Predicted vs measured</h2>",
                "<p>plan's figure for the settings each start used, beside what vLLM printed (source vllm) or the "
                "launcher measured; error = (plan - actual) / actual.</p>",
                _table(ACCURACY_HEADERS, accuracy_rows(accuracy["rows"]), numeric_from=2)]
    search = report.get("search")
    if search:
        out += _search_html(search)
    probes = set((search or {}).get("ids") or [])
    if with_charts:
        overview = report["charts"]["overview"]
        out.append(f'<img src="{_image(overview, base)}" alt="peak memory per combination" width="900">')
    fails = [c for c in failures(report) if c["id"] not in probes]  # a probe that failed is the search's answer
    if fails:
        out.append("<h2>Failures</h2>")
        for c in fails:
            phase = f" in {c['phase']}" if c.get("phase") and c["phase"] != "unknown" else ""
            checks = ", failed the suite's checks" if c.get("passed") is False else ""
            css = "ok" if c["outcome"] == "ok" else "fail"
            out.append(f'<h3><code>{escape(c["id"])}</code>: <span class="{css}">{escape(c["outcome"])}</span>'
                       f"{escape(phase + checks)}</h3>")
            out.append(f"<p>{escape(c['diagnosis']['summary'] or 'No diagnosis: the log did not match a known failure.')}</p>")
            if c["diagnosis"].get("error_line"):
                out.append(f"<p>Root-cause line:</p><pre>{escape(c['diagnosis']['error_line'])}</pre>")
            if c.get("reasons"):
                out.append("<ul>" + "".join(f"<li>check failed: {escape(r)}</li>" for r in c["reasons"]) + "</ul>")
            suggestions = suggested_settings(c)
            if suggestions:
                out.append("<p>Suggested settings: " + "; ".join(_code_to_html(s) for s in suggestions) + ".</p>")
            if c.get("log_tail"):
                out.append(f"<details><summary>Last {len(c['log_tail'])} lines of {escape(str(c.get('log_file')))}"
                           f"</summary><pre>{escape(chr(10).join(c['log_tail']))}</pre></details>")
    if with_charts:
        out.append("<h2>Memory over time</h2>")
        for c in report["combinations"]:
            out.append(f'<h3><code>{escape(c["id"])}</code></h3>'
                       f'<img src="{_image(c["chart"], base)}" alt="memory over time for {escape(c["id"])}" '
                       'width="900">')
    out.append("<footer>Written by vllm-memcheck <code>report</code>. Tokens, keys, user names, home directories "
               "and host names are redacted.</footer></body></html>")
    return "\n".join(out) + "\n"
