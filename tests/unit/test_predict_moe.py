"""predict.moe: one MoE layer's transient bytes in the profile run, by each vLLM version's fused-MoE buffer layout."""

from __future__ import annotations

from math import prod
from pathlib import Path

import pytest

from diagnostics.models import get_model
from diagnostics.predict.moe import chunk_tokens, moe_layer_bytes
from diagnostics.predict.terms import llm_pass_bytes

ROOT = Path(__file__).resolve().parents[2]
QWEN3 = get_model(ROOT / "tests/data/models/qwen3-30b-a3b")  # H 2048, moe_intermediate 768, top-8 of 128
DSV2L = get_model(ROOT / "tests/data/models/deepseek-v2-lite")  # H 2048, moe_intermediate 1408, top-6; layer 0 dense


@pytest.mark.parametrize("version, tokens, expected", [
    ("0.10.0", 100_000, 65_536), ("0.11.0", 100_000, 65_536),  # VLLM_FUSED_MOE_CHUNK_SIZE 64 Ki
    ("0.12.0", 100_000, 16_384), ("0.17.0", 20_000, 16_384),   # 16 Ki
    ("0.18.0", 100_000, 100_000), ("0.32.0", 8_192, 8_192),    # no chunking
])
def test_fused_moe_chunking_per_version(version, tokens, expected):
    assert chunk_tokens(tokens, version) == expected


def test_the_layer_reads_top_k_from_the_config():
    assert QWEN3.decoder.moe.top_k == 8 and DSV2L.decoder.moe.top_k == 6


@pytest.mark.parametrize("version, rule", [("0.7.0", "separate"), ("0.10.0", "shared13"), ("0.32.0", "modular")])
def test_buffers_follow_each_versions_layout(version, rule):
    M, k, H, N = 8192, 8, 2048, 2 * (768 // 4)  # Qwen3-30B-A3B on TP 4
    shapes = {  # vLLM's own allocations, element counts
        "separate": [(M, k, N), (M * k, N // 2), (M, k, H)],                      # fused_moe.py 0.7.0:703-711
        "shared13": [(M * k * max(N, H),), (M * k, N // 2)],                      # fused_moe.py 0.10.0:1418-1427
        "modular": [(M, k, max(N, H)), (max(M * k * max(N // 2, H), M * H),)],    # triton_moe.py 0.32:238-241
    }
    got = moe_layer_bytes(QWEN3.decoder, M, 2, tp=4, version=version)
    assert got.rule == rule
    assert got.value == (2 * H * M + sum(prod(s) for s in shapes[rule])) * 2
    assert got.low <= got.value < got.high


def test_a_moe_model_profiles_more_than_its_dense_intermediate_says():
    dense_formula = 8192 * (2 * 2048 + 3 * 6144 // 4) * 2  # what plan used before: config intermediate_size 6144
    moe = llm_pass_bytes(QWEN3, 8192, 2, 4, version="0.32.0")
    assert moe > 3 * dense_formula  # 8 experts per token x hidden 2048, twice, against 3 x 1536
    assert moe == moe_layer_bytes(QWEN3.decoder, 8192, 2, 4, "0.32.0").value


def test_a_model_with_dense_layers_takes_the_larger_layer():
    dense = 8192 * (2 * 2048 + 3 * 10944 // 2) * 2  # DeepSeek-V2-Lite's first (dense) layer on TP 2
    moe = moe_layer_bytes(DSV2L.decoder, 8192, 2, 2, "0.32.0").value
    assert llm_pass_bytes(DSV2L, 8192, 2, 2, version="0.32.0") == max(dense, moe)
    assert llm_pass_bytes(DSV2L, 8192, 2, 2, version="0.10.0") == max(dense, moe_layer_bytes(DSV2L.decoder, 8192, 2, 2,
                                                                                       "0.10.0").value)


def test_the_activation_range_covers_the_kernels():
    from diagnostics.predict.estimator import plan

    p = plan(QWEN3, "a100-80", "0.10.0", "serve", {"tensor_parallel_size": 4, "max_num_batched_tokens": 8192})
    act = p.components["activation_peak"]
    m = moe_layer_bytes(QWEN3.decoder, 8192, 2, 4, "0.10.0")
    assert m.high / m.value > 1.5  # 0.10's shared cache13 layout against 0.32's modular one and the extras
    assert act.high_gib >= act.value_gib * m.high / m.value
    assert any(n.startswith("MoE layers:") for n in p.notes)
