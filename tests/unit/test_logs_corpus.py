"""The log reader and the explainer on every field case and on inputs written from vLLM's format strings (issue #10).

Field cases: tests/data/field_cases/{cases.jsonl,cases-2.jsonl,cases-3.jsonl} (real logs, verbatim) with expected.json (what each
excerpt allows). Format inputs: tests/data/log_formats/k*_*.toml, one file per kind of mistake (README there).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from diagnostics.explain import explain_record
from diagnostics.logs.reader import read_log

DATA = Path(__file__).resolve().parents[1] / "data"
FIELD = DATA / "field_cases"
FORMATS = DATA / "log_formats"
UNIT_GIB = {"bytes": 1 / (1 << 30), "KiB": 1 / (1 << 20), "MiB": 1 / 1024, "GiB": 1.0}
UNDECIDED = frozenset({"unknown", "oom_unknown"})


def _field_cases() -> list[tuple[str, str, dict]]:
    expected = json.loads((FIELD / "expected.json").read_text())
    out = []
    for line in (FIELD / "cases.jsonl").read_text().splitlines():
        case = json.loads(line)
        if (case.get("log_excerpt") or "").strip():
            out.append((case["source"], case["log_excerpt"], expected[case["source"]]))
    for name in ("cases-2.jsonl", "cases-3.jsonl"):
        for line in (FIELD / name).read_text().splitlines():
            case = json.loads(line)
            out.append((case["id"], case["log"], expected[case["id"]]))
    return out


def _format_cases() -> list[tuple[str, str, dict]]:
    out = []
    for path in sorted(FORMATS.glob("k*_*.toml")):
        for case in tomllib.loads(path.read_text())["case"]:
            out.append((f"{path.stem}: {case['name']}", case["text"], case.get("expect", {})))
    return out


FIELD_CASES = _field_cases()
FORMAT_CASES = _format_cases()


def gib(spec) -> float:
    """A figure: a number, "N MiB" / "0 bytes", or a sum "a MiB + b GiB"."""
    if not isinstance(spec, str):
        return spec
    total = 0.0
    for part in spec.split("+"):
        m = re.fullmatch(r"\s*(-?[\d.]+)\s*(bytes|KiB|MiB|GiB)\s*", part)
        assert m, f"unreadable expected figure {spec!r}"
        total += float(m.group(1)) * UNIT_GIB[m.group(2)]
    return total


def check_record(rec, expect: dict, label: str) -> None:
    """Every field `expect` names, against the record."""
    got = rec.to_json()
    for key in ("outcome", "engine", "vllm_version"):
        if key in expect:
            assert got[key] == expect[key], (label, key, got[key], rec.evidence)
    for key in ("phase", "reached"):
        if key in expect:
            allowed = expect[key] if isinstance(expect[key], list) else [expect[key]]
            assert got[key] in allowed, (label, key, got[key], rec.evidence)
    for key, spec in (expect.get("numbers") or {}).items():
        held = ([got["numbers"][key]] if key in got["numbers"] else []) + list(got["numbers"].get(f"{key}_all", []))
        for value in spec if isinstance(spec, list) else [spec]:
            assert any(h == pytest.approx(gib(value), abs=1e-6) for h in held), (label, key, value, held)
    if "processes" in expect:
        seen = sorted((p["pid"] if p["pid"] is not None else -1, round(p["gib"], 4), p["this_process"])
                      for p in got["gpu_processes"])
        want = sorted((pid if pid is not None else -1, round(gib(size), 4), this)
                      for pid, size, this in expect["processes"])
        assert seen == want, label
    for key, value in (expect.get("settings") or {}).items():
        assert got["settings"].get(key) == value, (label, key, got["settings"].get(key))
    if "error_line_has" in expect:
        assert expect["error_line_has"] in (rec.error_line or ""), (label, rec.error_line)


def check_explanation(rec, expect: dict, label: str) -> None:
    exp = explain_record(rec)
    if "blames_other_processes" in expect:
        blamed = any(c.term == "other_processes" for c in exp.culprits)
        assert blamed == expect["blames_other_processes"], (label, exp.summary)
        if blamed:
            assert "other process" in exp.summary.lower(), exp.summary
    if "kv_growth" in expect:
        text = exp.summary + " ".join(c.why for c in exp.culprits)
        assert f"{expect['kv_growth']:.2f}x" in text, (label, text)
    if "fix" in expect:
        assert exp.to_json()["fix"] == expect["fix"], label


@pytest.mark.parametrize("label,text,expect", FIELD_CASES, ids=[c[0][:60] for c in FIELD_CASES])
def test_field_case(label, text, expect):
    rec = read_log(text)
    assert rec.outcome in expect["accept"], (label, rec.outcome, rec.evidence)
    check_record(rec, expect, label)
    check_explanation(rec, expect, label)


@pytest.mark.parametrize("label,text,expect", FORMAT_CASES, ids=[c[0][:80] for c in FORMAT_CASES])
def test_format_case(label, text, expect):
    rec = read_log(text)
    check_record(rec, expect, label)
    check_explanation(rec, expect, label)


def test_every_field_case_has_an_expectation_and_every_kind_is_covered():
    expected = {k for k in json.loads((FIELD / "expected.json").read_text()) if not k.startswith("_")}
    assert expected == {label for label, _, _ in FIELD_CASES}
    assert len(FIELD_CASES) == 41
    kinds = {int(p.name[1]) for p in FORMATS.glob("k*_*.toml")}
    assert kinds == set(range(1, 10))


def test_no_confident_wrong_answer_on_any_field_case():
    """Where the evidence allows only `unknown`-like answers, a definite one is wrong; never guess."""
    for label, text, expect in FIELD_CASES:
        outcome = read_log(text).outcome
        assert outcome in expect["accept"] or outcome in UNDECIDED, (label, outcome)


# (case, listed figure) that is not a vLLM figure although its digits appear in the excerpt.
NOT_VLLM_FIGURES = {("vllm-project/vllm#10569", "profile_dummy_pixel_values_shape"): "a user's debug print"}


def test_field_case_figures_the_dataset_lists_are_all_expected():
    """expected.json keeps every figure the case files list where the excerpt prints it (none forgotten)."""
    def printed(value, text):
        forms = {str(value), f"{value:.2f}", f"{value:.4f}"} if isinstance(value, float) else {str(value)}
        return any(re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", text) for f in forms)

    for label, text, expect in FIELD_CASES:
        wanted = set()
        for v in (expect.get("numbers") or {}).values():
            wanted.update(gib(x) for x in (v if isinstance(v, list) else [v]))
        wanted.update(gib(size) for _, size, _ in expect.get("processes") or [])
        wanted.update(v for v in (expect.get("settings") or {}).values() if isinstance(v, (int, float)))
        source = next(json.loads(ln) for f in ("cases.jsonl", "cases-2.jsonl", "cases-3.jsonl")
                      for ln in (FIELD / f).read_text().splitlines()
                      if label in (json.loads(ln).get("source"), json.loads(ln).get("id")))
        listed = source.get("reported_numbers") or source.get("numbers") or {}
        for key, value in listed.items():
            if (label, key) in NOT_VLLM_FIGURES:
                continue
            for v in value if isinstance(value, list) else [value]:
                v = v / 1024 if key.endswith("_mib") and isinstance(v, (int, float)) else v
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not printed(v, text):
                    continue
                assert any(w == pytest.approx(v, abs=0.006) for w in wanted), (label, key, v)
