"""Print docs/models.md's two tables: vLLM 0.32's own figures (tests/data/vllm-0.32-vlm-figures.json, written by
tests/tools/vlm_vllm_check.py) beside plan's for the same model and settings (card "cpu": the figures were taken
on vLLM's CPU platform, whose defaults plan resolves for that card).

usage: PYTHONPATH=. python tests/tools/models_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

from diagnostics.models import get_model
from diagnostics.predict.estimator import plan

FIGURES = Path(__file__).resolve().parents[1] / "data" / "vllm-0.32-vlm-figures.json"


def _tokens(d: dict) -> str:
    return ", ".join(f"{m} {n}" for m, n in sorted(d.items())) or "-"


def param_rows(figures: dict) -> list[str]:
    rows = []
    for name, m in figures["models"].items():
        meta = m.get("meta")
        if meta:
            rows.append(f"| {name} | {meta['model_class']} | {meta['params']:,} | {get_model(name).params:,} |")
    return rows


def budget_rows(figures: dict) -> list[str]:
    rows = []
    for name, m in figures["models"].items():
        for row in m["rows"]:
            got, settings = row["vllm"], row["settings"]
            if "error" in got:
                rows.append(f"| {name} | `{json.dumps(settings)}` | not computable offline: {got['error'][:60]} "
                            "| | | | | |")
                continue
            p = plan(name, "cpu", "0.32.0", "llm", settings)
            prof = p.profile
            rows.append(f"| {name} | `{json.dumps(settings)}` | {_tokens(got['tokens_per_item'])} | "
                        f"{_tokens(prof['tokens_per_modality'])} | {got['encoder_budget']} | "
                        f"{prof['encoder_budget_tokens']} | {got['items']} {got['modality']} | "
                        f"{prof['encoder_items']} {prof['modality']} |")
    return rows


if __name__ == "__main__":
    figures = json.loads(FIGURES.read_text())
    print("\n".join(param_rows(figures)))
    print()
    print("\n".join(budget_rows(figures)))
