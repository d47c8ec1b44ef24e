"""`plan` equals every row measured on real vLLM releases (tests/data/version_conformance.json, rendered as
docs/version-conformance.md by tests/tools/version_conformance.py, which is how the data is refreshed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tools.conformance_render import compare, render

DATA = Path(__file__).resolve().parents[1] / "data" / "version_conformance.json"
MEASURED = json.loads(DATA.read_text(encoding="utf-8"))
ROWS = compare(MEASURED)


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
    assert {r["check"] for r in ROWS} >= {"defaults", "cpu-defaults", "util", "budget", "meta"}


def test_a_wrong_rule_would_show_as_a_mismatch():
    """The pairing can fail: the same data with 0.32.0's encoder budget bumped by one token disagrees."""
    changed = json.loads(json.dumps(MEASURED))
    changed["versions"]["0.32.0"]["probe"]["budgets"]["mbt8192"]["encoder_budget"] += 1
    bad = [r for r in compare(changed) if not r["match"]]
    assert [(r["version"], r["key"]) for r in bad] == [("0.32.0", "mbt8192")]
    assert "**MISMATCH**" in render(changed) and "**MISMATCH**" not in render(MEASURED)
