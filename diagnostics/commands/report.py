"""`python -m diagnostics report RESULTS [--format md|json|html|png|all] [--out DIR]`."""

from __future__ import annotations

import sys

from diagnostics.report import FILE_NAMES, parse_formats, write_reports
from diagnostics.report.content import resolve_source
from diagnostics.suite.results import load_results_noting

HELP = "write Markdown/JSON/HTML/PNG memory reports from a sweep's results.jsonl"


def add_arguments(parser) -> None:
    parser.add_argument("results", metavar="RESULTS", help="a sweep's results.jsonl or its run directory (reports/<run>/)")
    parser.add_argument("--format", default="all", metavar="FORMATS",
                        help="md, json, html, png, a comma list of them, or all (default: all; html writes the PNGs too)")
    parser.add_argument("--out", metavar="DIR", default=None, help="where to write (default: the run directory)")
    parser.add_argument("--print", action="store_true", dest="print_md",
                        help="also print the Markdown report on stdout (to paste into an issue)")


def run(args) -> int:
    formats = parse_formats(args.format)
    if args.print_md and "md" not in formats:
        formats = formats + ("md",)
    _, notes = load_results_noting(resolve_source(args.results)[1])
    for note in notes:  # a truncated last line: the report is built without it, and says so
        print(f"vllm-memcheck report: warning: {note}", file=sys.stderr)
    written = write_reports(args.results, formats=formats, out_dir=args.out)
    for path in written:
        print(path)
    if args.print_md:
        md = next(p for p in written if p.name == FILE_NAMES["md"])
        print()
        print(md.read_text(encoding="utf-8"), end="")
    return 0
