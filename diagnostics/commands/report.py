"""`python -m diagnostics report RESULTS [RESULTS ...] [--format md|json|html|png|benchmark|all] [--out DIR]`.

One run: its report (report.md/json/html, charts/). Several runs (one per card, e.g. the run directories the
CI job matrix uploads, docs/upgrade-gate.md): one cross-card report, cross-card.md / cross-card.json /
cross-card.png with a column per card (report/crosscard.py), written to --out (default: ./cross-card).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from diagnostics.report.content import resolve_source
from diagnostics.suite.results import load_results_noting

from diagnostics.errors import UsageError
from diagnostics.report import FILE_NAMES, parse_formats, write_reports
from diagnostics.report.crosscard import build_cross_card, render_cross_card_markdown

HELP = "write Markdown/JSON/HTML/PNG memory reports from a sweep's results.jsonl (several runs: one cross-card report)"
CROSS_CARD_DIR = "cross-card"


def add_arguments(parser) -> None:
    parser.add_argument("results", metavar="RESULTS", nargs="+",
                        help="a sweep's results.jsonl or its run directory (reports/<run>/); several: a cross-card "
                             "report with a column per run")
    parser.add_argument("--format", default="all", metavar="FORMATS",
                        help="md, json, html, png, benchmark, a comma list of them, or all (default: all = md, json, "
                             "html, png; html writes the PNGs too; benchmark: github-action-benchmark's custom JSON, "
                             "benchmark-smaller.json and benchmark-bigger.json)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help=f"where to write (default: the run directory; ./{CROSS_CARD_DIR} for several runs)")
    parser.add_argument("--print", action="store_true", dest="print_md",
                        help="also print the Markdown report on stdout (to paste into an issue)")


def run(args) -> int:
    formats = parse_formats(args.format)
    if args.print_md and "md" not in formats:
        formats = formats + ("md",)
    if len(args.results) > 1:
        return _cross_card(args, formats)
    _, notes = load_results_noting(resolve_source(args.results[0])[1])
    for note in notes:  # a truncated last line: the report is built without it, and says so
        print(f"vllm-memcheck report: warning: {note}", file=sys.stderr)
    written = write_reports(args.results[0], formats=formats, out_dir=args.out)
    for path in written:
        print(path)
    if args.print_md:
        md = next(p for p in written if p.name == FILE_NAMES["md"])
        print()
        print(md.read_text(encoding="utf-8"), end="")
    return 0


def _cross_card(args, formats) -> int:
    if ("html" in formats or "benchmark" in formats) and args.format.strip() != "all":
        raise UsageError("a cross-card report is md, json and png; accepted --format for several runs: md, json, "
                         "png, all (benchmark: one run at a time)")
    report = build_cross_card(args.results)
    out = Path(args.out or CROSS_CARD_DIR)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    markdown = render_cross_card_markdown(report)
    if "md" in formats:
        written.append(out / "cross-card.md")
        written[-1].write_text(markdown, encoding="utf-8")
    if "json" in formats:
        written.append(out / "cross-card.json")
        written[-1].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if "png" in formats or args.format.strip() == "all":
        from diagnostics.report.charts import write_cross_card_chart  # matplotlib only when a chart is asked for

        written.append(write_cross_card_chart(report, out))
    for path in written:
        print(path)
    if args.print_md:
        print()
        print(markdown, end="")
    return 0
