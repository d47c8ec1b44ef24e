"""Outcome and figure accuracy of the log reader over every field case, overall and per kind of mistake (issue #10).

    PYTHONPATH=$PWD python tests/tools/field_accuracy.py [--json] [--verbose]

Reads tests/data/field_cases/cases.jsonl, cases-2.jsonl and cases-3.jsonl (real logs, verbatim) and expected.json (what each
excerpt allows). An outcome is right when it is one the evidence allows (`accept`); a confident wrong answer is
any other outcome that is not unknown/oom_unknown. A figure is right when the reader holds the printed value under
the expected key (a figure printed several times must be held with every value); each process of a PyTorch OOM
message (pid, size, whether it is this process) and the version where the log shows one count as figures too.
Exit status 0 always: this measures, the unit tests judge.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from diagnostics.logs.reader import read_log

DATA = Path(__file__).resolve().parents[1] / "data" / "field_cases"
UNDECIDED = frozenset({"unknown", "oom_unknown"})
UNIT_GIB = {"bytes": 1 / (1 << 30), "KiB": 1 / (1 << 20), "MiB": 1 / 1024, "MB": 1 / 1024, "GiB": 1.0, "GB": 1.0}
KINDS = {1: "PyTorch OOM message", 2: "failure told by figures", 3: "summary layouts", 4: "disguised pastes",
         5: "frames tell the phase", 6: "non-memory errors", 7: "ratios from vLLM's figures", 8: "version",
         9: "partial pastes"}


def load_cases() -> list[tuple[str, str]]:
    """[(key, log text)] for every field case that carries a log: cases.jsonl by source, cases-2/-3 by id."""
    out = []
    for line in (DATA / "cases.jsonl").read_text().splitlines():
        case = json.loads(line)
        if (case.get("log_excerpt") or "").strip():
            out.append((case["source"], case["log_excerpt"]))
    for name in ("cases-2.jsonl", "cases-3.jsonl"):
        for line in (DATA / name).read_text().splitlines():
            case = json.loads(line)
            out.append((case["id"], case["log"]))
    return out


def load_expected() -> dict:
    return {k: v for k, v in json.loads((DATA / "expected.json").read_text()).items() if not k.startswith("_")}


def to_value(spec):
    """A figure in expected.json: a number (GiB for *_gib keys), "N MiB"/"N bytes", or "a MiB + b GiB" (a sum)."""
    if not isinstance(spec, str):
        return spec
    total = 0.0
    for part in spec.split("+"):
        m = re.fullmatch(r"\s*(-?[\d.]+)\s*(bytes|KiB|MiB|MB|GiB|GB)\s*", part)
        if m is None:
            raise ValueError(f"expected.json: cannot read figure {spec!r}")
        total += float(m.group(1)) * UNIT_GIB[m.group(2)]
    return total


def same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    return abs(float(a) - float(b)) <= max(1e-6, 1e-6 * abs(float(b)))


def figure_checks(expect: dict, rec: dict) -> list[tuple[str, bool]]:
    """(label, right) for every expected figure of one case."""
    numbers = rec.get("numbers") or {}
    checks = []
    for key, spec in (expect.get("numbers") or {}).items():
        held = [numbers[key]] if key in numbers else []
        held += list(numbers.get(f"{key}_all") or [])
        for value in (spec if isinstance(spec, list) else [spec]):
            checks.append((f"{key}={value}", any(same(h, to_value(value)) for h in held)))
    got = [(p.get("pid"), p.get("gib"), p.get("this_process")) for p in rec.get("gpu_processes") or []]
    for pid, size, this in expect.get("processes") or []:
        ok = any(g[0] == pid and same(g[1], to_value(size)) and g[2] == this for g in got)
        checks.append((f"process {pid}={size} this={this}", ok))
    if "version" in expect:
        checks.append((f"version={expect['version']}", rec.get("vllm_version") == expect["version"]))
    return checks


def measure(verbose: bool = False) -> dict:
    expected = load_expected()
    cases = load_cases()
    missing = sorted({k for k, _ in cases} ^ set(expected))
    if missing:
        raise SystemExit(f"expected.json and the case files disagree on: {missing}")
    per_kind = defaultdict(lambda: {"cases": 0, "outcome_right": 0, "figures": 0, "figures_right": 0})
    total = {"cases": 0, "outcome_right": 0, "outcome_by_rule": 0, "reached_right": 0, "reached_expected": 0,
             "confident_wrong": 0, "figures": 0, "figures_right": 0}
    wrong = []
    for key, text in cases:
        expect = expected[key]
        rec = read_log(text).to_json()
        right = rec["outcome"] in expect["accept"]
        checks = figure_checks(expect, rec)
        total["cases"] += 1
        total["outcome_right"] += right
        total["outcome_by_rule"] += rec["outcome"] == expect["outcome"]
        if expect.get("reached"):
            total["reached_expected"] += 1
            total["reached_right"] += rec.get("reached") in expect["reached"]
        total["confident_wrong"] += (not right) and rec["outcome"] not in UNDECIDED
        total["figures"] += len(checks)
        total["figures_right"] += sum(ok for _, ok in checks)
        for kind in expect.get("kinds") or []:
            k = per_kind[kind]
            k["cases"] += 1
            k["outcome_right"] += right
            k["figures"] += len(checks)
            k["figures_right"] += sum(ok for _, ok in checks)
        if not right or rec["outcome"] != expect["outcome"] or not all(ok for _, ok in checks):
            wrong.append({"case": key, "outcome": rec["outcome"], "accept": expect["accept"], "rule": expect["outcome"],
                          "figures_missed": [label for label, ok in checks if not ok]})
    return {"total": total, "per_kind": {k: per_kind[k] for k in sorted(per_kind)}, "wrong": wrong}


def pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100.0 * a / b:.0f} %)" if b else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the measurement as one JSON object")
    parser.add_argument("--verbose", action="store_true", help="list every case with a wrong outcome or figure")
    args = parser.parse_args(argv)
    result = measure()
    if args.json:
        print(json.dumps(result))
        return 0
    t = result["total"]
    print(f"field cases: {t['cases']}; outcome right {pct(t['outcome_right'], t['cases'])}; confident wrong "
          f"{t['confident_wrong']}; figures right {pct(t['figures_right'], t['figures'])}")
    print(f"  by the reader's rules (ok only with a ready marker): outcome {pct(t['outcome_by_rule'], t['cases'])}; "
          f"last phase reached {pct(t['reached_right'], t['reached_expected'])}")
    for kind, k in result["per_kind"].items():
        print(f"  kind {kind} ({KINDS[kind]}): {k['cases']} cases; outcome {pct(k['outcome_right'], k['cases'])}; "
              f"figures {pct(k['figures_right'], k['figures'])}")
    if args.verbose:
        for w in result["wrong"]:
            print(f"  - {w['case']}: {w['outcome']} (accept {w['accept']}, rule {w['rule']}); missed {w['figures_missed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
