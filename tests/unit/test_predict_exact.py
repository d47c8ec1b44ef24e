"""predict.exact: vLLM's own figures (real answers of diagnostics.vllm_exact.child, tests/data/vllm_exact) as the
estimator's weights and KV bytes per token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.predict.estimator import plan
from diagnostics.predict.exact import VllmExact, carry, exact_weights_gib, kv_bytes_per_token
from diagnostics.units import GiB

DATA = Path(__file__).resolve().parents[1] / "data"
ANSWERS = json.loads((DATA / "vllm_exact" / "answers-0.32.0.json").read_text())
TEXT = DATA / "models"


def exact(case: str) -> VllmExact:
    return VllmExact.from_json(ANSWERS[case])


def test_mla_kv_is_the_latent_per_layer():
    ds = exact("deepseek-v2-lite")
    assert ds.kv_bytes_per_token == 27 * (512 + 64) * 2 == 31104
    assert ds.weights_bytes == ds.param_bytes + ds.buffer_bytes and ds.param_bytes == 15706484224 * 2
    assert ds.label == "exact (vLLM 0.32.0's own code)"


def test_state_layers_take_vllms_pool_on_the_gpus_block_size():
    """Qwen3-Next: the child sized the pool with the GPU's hybrid block alignment (544 tokens at TP 1 in bf16), so
    the per-token cost holds the state's blocks: 12 layers x 544 x 2,048 B x (8 + 3 x 2) blocks / 4096 tokens."""
    nxt = exact("qwen3-next-80b-a3b")
    assert ANSWERS["qwen3-next-80b-a3b"]["kv_pool"]["gpu_hybrid_alignment"]["block_size"] == 544
    # (vLLM's pool: bytes used / int(concurrency x max_model_len) tokens, hence the approximation)
    assert nxt.kv_bytes_per_token == pytest.approx(12 * 544 * 2048 * (8 + 3 * 2) / 4096, rel=1e-6)
    assert any("state_bytes_per_sequence" in row for row in nxt.kv_layers)
    # an answer from before the alignment: the attention layers alone (12 full-attention layers, 2 KV heads of 256)
    old = {k: v for k, v in ANSWERS["qwen3-next-80b-a3b"]["kv_pool"].items() if k != "gpu_hybrid_alignment"}
    assert kv_bytes_per_token(nxt.kv_layers, old) == 12 * 2 * 2 * 256 * 2


def test_sliding_window_takes_vllms_pool_figure():
    gemma = exact("gemma-2-9b")
    assert gemma.kv_bytes_per_token == ANSWERS["gemma-2-9b"]["kv_pool"]["bytes_per_token"]
    naive = 42 * 2 * 8 * 256 * 2
    assert naive <= gemma.kv_bytes_per_token <= naive * 1.05  # the groups' padding, not fewer bytes at 4096


def test_kv_without_layers_is_none_and_offload_comes_off():
    assert kv_bytes_per_token((), None) is None
    ds = exact("deepseek-v2-lite")
    assert exact_weights_gib(ds, {"cpu_offload_gb": 4}) == pytest.approx(ds.weights_bytes / GiB - 4)
    assert exact_weights_gib(ds, {"cpu_offload_gb": 1000}) == 0


def test_a_plan_with_vllms_figures_uses_and_labels_them():
    ds = exact("deepseek-v2-lite")
    pure = plan(str(TEXT / "deepseek-v2-lite"), "a100-80", "0.32.0", "llm", {"max_model_len": 4096})
    p = plan(str(TEXT / "deepseek-v2-lite"), "a100-80", "0.32.0", "llm", {"max_model_len": 4096}, exact=ds)
    w = p.components["weights"]
    assert w.value_gib == pytest.approx(ds.weights_bytes / GiB) and w.low_gib == w.high_gib
    assert w.basis.startswith("exact (vLLM 0.32.0's own code)") and not pure.components["weights"].basis.startswith(
        "exact (vLLM")
    kv = p.components["kv_cache"]
    block = p.settings["block_size"] * 31104
    assert p.kv_cache_tokens == int(kv.value_gib * GiB // block) * p.settings["block_size"]
    assert any("31,104 B/token" in n and "MLAAttentionSpec" in n for n in p.notes)


def test_tensor_parallel_figures_are_rank_zeros():
    q = exact("qwen3-30b-a3b-tp4")
    p = plan(str(TEXT / "qwen3-30b-a3b"), "a10", "0.32.0", "llm", {"max_model_len": 4096,
                                                                   "tensor_parallel_size": 4}, exact=q)
    assert p.components["weights"].value_gib == pytest.approx(14.25, rel=0.01)
    assert "on rank 0 of 4" in p.components["weights"].basis
    assert q.kv_bytes_per_token == 48 * 2 * 1 * 128 * 2  # 4 KV heads over 4 ranks


def test_the_fake_tensor_llm_pass_replaces_the_formula_for_a_dense_model_only():
    q = exact("qwen2.5-32b-tp2")
    model = str(DATA / "calibration" / "models" / "qwen2.5-32b-instruct")
    settings = {"max_model_len": 10000, "tensor_parallel_size": 2}
    p = plan(model, "a100-80", "0.32.0", "llm", settings, exact=q)
    assert q.llm_pass_bytes and q.llm_pass_class == "Qwen2ForCausalLM"
    assert p.profile["llm_phase_gib"] >= q.llm_pass_bytes / GiB - 1e-3
    assert any("fake-tensor forward of transformers' Qwen2ForCausalLM" in n for n in p.notes)
    pure = plan(model, "a100-80", "0.32.0", "llm", settings)
    assert p.profile["llm_phase_gib"] != pure.profile["llm_phase_gib"]
    assert exact("deepseek-v2-lite").llm_pass_bytes is None  # MoE + MLA: the formula stays


def test_counterfactuals_carry_vllms_figures_only_where_they_hold():
    asked = {"tensor_parallel_size": 1, "max_model_len": 4096, "max_num_batched_tokens": 8192}
    ds = VllmExact.from_json(ANSWERS["deepseek-v2-lite"], asked)
    gemma = VllmExact.from_json(ANSWERS["gemma-2-9b"], asked)
    base = {**asked, "dtype": "auto", "kv_cache_dtype": "auto", "max_num_seqs": 256}
    assert carry(ds, base) is ds and carry(ds, {**base, "max_model_len": 2048, "max_num_seqs": 8}) is ds
    assert carry(ds, {**base, "tensor_parallel_size": 2}) is None
    assert carry(ds, {**base, "kv_cache_dtype": "fp8"}) is None
    assert carry(gemma, {**base, "max_model_len": 2048}) is None  # its sliding-window pool depends on it
    nxt = VllmExact.from_json(ANSWERS["qwen3-next-80b-a3b"], base)  # the state's blocks per token depend on it too
    assert carry(nxt, base) is nxt and carry(nxt, {**base, "max_model_len": 8192}) is None
    assert carry(gemma, {**base, "max_num_batched_tokens": 2048}).llm_pass_bytes is None
    assert carry(None, base) is None


def test_explain_replans_with_vllms_figures():
    from diagnostics.explain import explain_plan

    ds = VllmExact.from_json(ANSWERS["deepseek-v2-lite"], {"tensor_parallel_size": 1, "max_model_len": 32768,
                                                           "max_num_batched_tokens": 8192})
    p = plan(str(TEXT / "deepseek-v2-lite"), "a10", "0.32.0", "llm", {"max_model_len": 32768}, exact=ds)
    assert p.verdict != "ok" and p.exact is ds  # 29 GiB of weights on a 24 GB card
    e = explain_plan(p)
    assert all(c.setting != "max_model_len" for c in e.culprits)  # no length fixes weights that do not fit
