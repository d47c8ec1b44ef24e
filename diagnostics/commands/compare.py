"""`python -m diagnostics compare OLD NEW [--fail-on-regression SPEC]`: exit 1 on regression, 2 on bad input.

OLD and NEW are each a results.jsonl, a run directory or a baseline JSON saved by `--save-baseline`.
"""

from __future__ import annotations

import json
from pathlib import Path

from diagnostics.suite.baseline import (
    DEFAULT_TOLERANCES,
    compare,
    format_table,
    format_tolerances,
    load_results_source,
    parse_tolerances,
    planned_cause,
)

HELP = "compare two results files; exit 1 on a memory/start-up regression"


def add_arguments(parser) -> None:
    parser.add_argument("old", metavar="OLD", help="baseline: results.jsonl, run directory or saved baseline JSON")
    parser.add_argument("new", metavar="NEW", help="candidate: results.jsonl, run directory or saved baseline JSON")
    parser.add_argument("--fail-on-regression", metavar="SPEC", default=None,
                        help=f"tolerances, e.g. peak:5%%,kv_tokens:5%%,startup:20%% (KEY:off disables one); "
                             f"default {format_tolerances(DEFAULT_TOLERANCES).replace('%', '%%')}")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")


def run(args) -> int:
    tolerances = parse_tolerances(args.fail_on_regression)
    old_meta, old = load_results_source(args.old)
    new_meta, new = load_results_source(args.new)
    comparison = compare(old, new, tolerances)
    comparison.warnings = old_meta.get("warnings", []) + new_meta.get("warnings", []) + comparison.warnings
    if Path(old_meta["path"]).resolve() == Path(new_meta["path"]).resolve():
        comparison.warnings.insert(0, f"both inputs are the same file ({new_meta['path']}): nothing can differ")
    if args.json:
        print(json.dumps({
            "schema_version": 1,
            "regressed": comparison.regressed,
            "tolerances": comparison.tolerances,
            "warnings": comparison.warnings,
            "vllm": {"baseline": comparison.versions[0], "candidate": comparison.versions[1]},
            "rows": [{"id": r.id, "status": r.status, "changes": r.changes, "planned": planned_cause(r)}
                     for r in comparison.rows],
        }, indent=2))
    else:
        print(format_table(comparison))
    return 1 if comparison.regressed else 0
