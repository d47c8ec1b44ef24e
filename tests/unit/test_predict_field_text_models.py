"""plan on real start-up reports of text MoE / MLA models (tests/data/field_cases/text-moe-mla.jsonl, collected for
issue 20 from public threads): weights, KV bytes per token, KV pool and verdict against what vLLM printed.
docs/accuracy.md's "Text MoE / MLA models" table lists the same figures; the last test keeps it in step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.models import get_model
from diagnostics.predict import pipeline
from diagnostics.predict.estimator import plan
from diagnostics.units import GiB
from diagnostics.versions import parse_version

ROOT = Path(__file__).resolve().parents[2]
CASES = {c["id"]: c for c in map(json.loads, (ROOT / "tests/data/field_cases/text-moe-mla.jsonl").read_text()
                                 .splitlines())}
QWEN3 = get_model(ROOT / "tests/data/models/qwen3-30b-a3b")
DSV2L = get_model(ROOT / "tests/data/models/deepseek-v2-lite")
# vllm PR 20665's run: TP 2 x PP 2 on four L4s (inferred from its four workers and the N=704 MoE config name), an
# LLM(...) script (inferred: no API-server lines), vLLM of July 2025 planned as 0.10.0
PR20665 = {"tensor_parallel_size": 2, "pipeline_parallel_size": 2, "max_model_len": 1024}


def scores() -> list[tuple[str, str, float, float]]:
    """(case id, figure, printed, planned) for every figure the cases allow plan to be scored on."""
    out = []
    c = CASES["vllm-pr4650-ok-v050-deepseek-v2-lite"]  # 0.5.0.post1: our 0.5.x rules are 0.5.4's
    p = plan(DSV2L, "a100-80", "0.5.4", "llm", {"max_model_len": 32000})
    out.append((c["id"], "weights [GiB]", c["numbers"]["weights_gib"], p.components["weights"].value_gib))
    out.append((c["id"], "KV tokens (card inferred: 80 GB)", c["numbers"]["gpu_blocks"] * 16, p.kv_cache_tokens))
    block = 16 * DSV2L.kv_bytes_per_token(version=parse_version("0.5.4"))
    out.append((c["id"], "CPU blocks (swap_space=4 // block bytes)", c["numbers"]["cpu_blocks"], 4 * GiB // block))
    c = CASES["vllm-pr20665-ok-deepseek-v2-lite-4xL4-tp2-pp2"]
    per_token = 12.13 * GiB / c["numbers"]["kv_cache_tokens"]  # the first PP stage: 14 of 27 layers
    first = pipeline.stage_model(DSV2L, pipeline.stages(DSV2L, 2, "0.10.0")[0])
    planned = first.kv_bytes_per_token(tp=2, version=parse_version("0.10.0"))
    out.append((c["id"], "KV bytes per token (14-layer stage)", per_token, planned))
    p = plan(DSV2L, "l4", "0.10.0", "llm", PR20665)
    out.append((c["id"], "KV tokens (PP 2 x TP 2, min of the stages; llm inferred)", c["numbers"]["kv_cache_tokens"],
                p.kv_cache_tokens))
    for stage, printed in ((0, 12.13), (1, 11.33)):  # ranks 0-1 and 2-3
        out.append((c["id"], f"KV [GiB] of PP stage {stage} (llm inferred)", printed,
                    p.profile["pipeline_stages"][stage]["kv_cache_gib"]))
    c = CASES["vllm-34076-kv-too-small-qwen3-coder-30b-a3b-fp8-pp2-mixed-cards"]  # vLLM's whole-model PP check
    need = c["numbers"]["max_model_len"] * QWEN3.kv_bytes_per_token(2, version=parse_version("0.15.0")) / GiB
    out.append((c["id"], "KV of one 262,144-token request, all 48 layers [GiB]", c["numbers"]["kv_needed_gib"], need))
    c = CASES["vllm-17469-oom-v085-qwen3-moe-tp4"]
    p = plan(QWEN3, "a10", "0.8.5", "serve", {"tensor_parallel_size": 4})
    out.append((c["id"], "weights per rank [GiB]", c["numbers"]["weights_gib"], p.components["weights"].value_gib))
    return out


@pytest.mark.parametrize("case, figure, printed, planned", scores(), ids=lambda v: str(v)[:40])
def test_plan_is_close_to_what_vllm_printed(case, figure, printed, planned):
    bound = 0.10 if "inferred" in figure else 0.01
    assert abs(planned / printed - 1) <= bound, (case, figure, printed, planned)


def test_the_pp2_start_that_worked_is_called_ok():
    c = CASES["vllm-pr20665-ok-deepseek-v2-lite-4xL4-tp2-pp2"]
    assert plan(DSV2L, "l4", "0.10.0", "llm", PR20665).verdict in c["accept"]


def test_the_a10_tp4_start_that_ran_out_of_memory_is_not_called_ok():
    c = CASES["qwen3-1387-oom-4xA10-qwen3-30b-a3b-tp4"]
    s = {k: v for k, v in c["settings"].items() if k != "entrypoint"}
    p = plan(QWEN3, "a10", "0.8.5", "serve", s)
    assert p.verdict != "ok" and p.verdict in c["accept"]


def row(case: str, figure: str, printed: float, planned: float) -> str:
    """One docs/accuracy.md table row: GiB with 2 decimals, counts and bytes as whole numbers."""
    def fmt(v):
        return f"{v:,.2f}" if "GiB" in figure else f"{round(v):,}"
    return f"| {case} | {figure} | {fmt(printed)} | {fmt(planned)} | {100 * (planned / printed - 1):+.1f}% |"


def test_docs_accuracy_lists_these_figures():
    text = (ROOT / "docs" / "accuracy.md").read_text()
    assert "## Text MoE / MLA models" in text
    for score in scores():
        assert row(*score) in text, row(*score)
