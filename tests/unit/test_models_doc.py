"""docs/models.md: every row of its two tables is re-planned here; vLLM's column and plan's column must both equal
what plan computes now (vLLM's figures come from tests/tools/vlm_vllm_check.py runs of vLLM 0.32's own code)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from diagnostics.models import get_model
from diagnostics.predict.estimator import plan

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
FIGURES = Path(__file__).resolve().parents[2] / "tests" / "data" / "vllm-0.32-vlm-figures.json"


def _rows(prefix: str) -> list[list[str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells and cells[0] in get_stored() and len(cells) == prefix:
            rows.append(cells)
    return rows


def get_stored() -> set[str]:
    from diagnostics.models import stored_models

    return set(stored_models()) | {"minicpm-v-2_6"}  # the built-in MiniCPM-V-2_6 has rows too


def _tokens(text: str) -> dict[str, int]:
    return {m: int(n) for m, n in (part.split() for part in text.split(", "))} if text not in ("", "-") else {}


PARAM_ROWS = _rows(4)
BUDGET_ROWS = [r for r in _rows(8) if not r[2].startswith("not computable")]


def test_the_tables_cover_eight_models_and_every_stored_figure():
    figures = json.loads(FIGURES.read_text())["models"]
    assert len(PARAM_ROWS) == len([m for m in figures.values() if "meta" in m]) >= 8
    computable = sum(1 for m in figures.values() for r in m["rows"] if "error" not in r["vllm"])
    assert len(BUDGET_ROWS) == computable >= 25


@pytest.mark.parametrize("row", PARAM_ROWS, ids=[r[0] for r in PARAM_ROWS])
def test_params_row(row):
    name, _cls, vllm_params, plan_params = row
    assert int(vllm_params.replace(",", "")) == int(plan_params.replace(",", "")) == get_model(name).params


@pytest.mark.parametrize("row", BUDGET_ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(BUDGET_ROWS)])
def test_budget_row(row):
    name, settings, vllm_tokens, plan_tokens, vllm_n, plan_n, vllm_m, plan_m = row
    prof = plan(name, "cpu", "0.32.0", "llm", json.loads(settings.strip("`"))).profile
    assert _tokens(vllm_tokens) == _tokens(plan_tokens) == prof["tokens_per_modality"]
    assert int(vllm_n) == int(plan_n) == prof["encoder_budget_tokens"]
    assert vllm_m == plan_m == f"{prof['encoder_items']} {prof['modality']}"


def test_the_doc_table_matches_the_raw_figures():
    """The vLLM columns are copied from the check-script output, not typed."""
    figures = json.loads(FIGURES.read_text())["models"]
    raw = {(n, json.dumps(r["settings"])): r["vllm"] for n, m in figures.items() for r in m["rows"]
           if "error" not in r["vllm"]}
    for name, settings, vllm_tokens, _, vllm_n, _, vllm_m, _ in BUDGET_ROWS:
        got = raw[(name, settings.strip("`"))]
        assert (_tokens(vllm_tokens), int(vllm_n), vllm_m) == (
            got["tokens_per_item"], got["encoder_budget"], f"{got['items']} {got['modality']}")


def test_not_computable_rows_say_why():
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and "not computable" in line]
    assert lines and all(re.search(r"Failed to apply \w+Processor", line) for line in lines)


def test_every_family_variant_has_vllms_figures_beside_plans_or_says_why_not():
    """A row per family: each variant of every family module has a parameter row and a budget row for one of its
    models, or the page names its models under "Not buildable with vLLM 0.32" (Llama-3.2-Vision: no mllama module
    since 0.11.0). A family added without rows fails here."""
    from diagnostics import families

    text = DOC.read_text()
    not_buildable = text.split("Not buildable with vLLM 0.32", 1)[1].split("\n\n", 1)[0]
    # a model whose parameters vLLM builds but whose budget needs a remote-code processor says so in one paragraph
    no_budget = text.split("Budget rows not computable offline", 1)[1].split("\n\n", 1)[0]
    params = {r[0] for r in PARAM_ROWS}
    budgets = {r[0] for r in BUDGET_ROWS}
    missing = []
    for module in families.MODULES:
        for variant, info in module.VARIANTS.items():
            names = set(info.stored) | ({variant} if variant == "minicpm-v-2_6" else set())
            if names & params and (names & budgets or any(f"`{n}`" in no_budget for n in names)):
                continue
            if any(f"`{n}`" in not_buildable for n in names):
                continue
            missing.append(f"{module.__name__.rsplit('.', 1)[1]}:{variant}")
    assert not missing, f"no vLLM figures in docs/models.md for {missing}"
