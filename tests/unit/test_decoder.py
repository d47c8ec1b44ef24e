"""diagnostics/decoder.py: text decoders by vLLM's layer rules from config.json: MoE, MLA, sliding-window and
hybrid layer kinds, ChatGLM-style keys; the issue-20 done-when numbers on the config path (real configs in
tests/data/models, see SOURCES.md there)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from diagnostics.decoder import (FULL, LINEAR, SLIDING, decoder_from_config, hybrid_pool_bytes_per_token,
                                 kv_group_size, layer_kinds, state_pool_block_size)
from diagnostics.models import get_model, model_from_config
from diagnostics.predict.estimator import plan
from diagnostics.quantization import read_quantization
from diagnostics.versions import parse_version
from diagnostics.units import GiB

DATA = Path(__file__).resolve().parents[1] / "data" / "models"


def _cfg(name):
    return json.loads((DATA / name / "config.json").read_text())


def test_qwen3_30b_a3b_moe_parameters_and_tp4_weights():
    m = get_model(DATA / "qwen3-30b-a3b")
    assert m.decoder.moe.experts == 128 and len(m.decoder.moe.moe_layers) == 48
    assert m.params == 30_532_122_624  # published: 30.5 B
    per_rank = m.decoder.params_per_rank(4) * 2 / GiB
    assert abs(per_rank / 14.25 - 1) < 0.04  # vLLM printed 14.25 GiB per rank at TP 4 (issue 20)
    assert m.kv_bytes_per_token() == 48 * 2 * 4 * 128 * 2 and m.kv_bytes_per_token(tp=4) == 48 * 2 * 1 * 128 * 2
    assert m.kv_bytes_per_token(tp=8) == m.kv_bytes_per_token(tp=4)  # 4 KV heads on 8 ranks: one each, replicated


def test_deepseek_v2_lite_mla_moe_weights_and_kv():
    m = get_model(DATA / "deepseek-v2-lite")
    moe = m.decoder.moe
    assert moe.moe_layers == tuple(range(1, 27)) and moe.shared_inter == 2 * 1408  # first_k_dense_replace=1
    assert abs(m.params / 15.7e9 - 1) < 0.01  # published: 15.7 B
    assert abs(m.weights_bytes() / GiB / 29.2 - 1) < 0.05
    assert m.kv_bytes_per_token() == 31_104 == 27 * (512 + 64) * 2  # one latent "head" per layer
    assert m.kv_bytes_per_token(tp=4) == 31_104  # replicated on every rank
    p = plan(m, "a100-80", "0.32.0", "serve", {"max_model_len": 8192})
    assert p.components["weights"].basis.startswith("derived")  # config arithmetic, never `exact`


@pytest.mark.parametrize("extra, moe_layers", [
    ({"first_k_dense_replace": 2}, (2, 3, 4, 5)),
    ({"moe_layer_freq": 2}, (0, 2, 4)),
    ({"first_k_dense_replace": 1, "moe_layer_freq": 2}, (2, 4)),
    ({"moe_layer_freq": [0, 1, 1, 0, 1, 0]}, (1, 2, 4)),
    ({"decoder_sparse_step": 2}, (1, 3, 5)),
    ({"mlp_only_layers": [0, 5]}, (1, 2, 3, 4)),
])
def test_which_layers_are_moe(extra, moe_layers):
    cfg = {"hidden_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4, "vocab_size": 128,
           "intermediate_size": 256, "moe_intermediate_size": 32, "n_routed_experts": 8, **extra}
    d = decoder_from_config(cfg, "X", "cfg")
    assert d.moe.moe_layers == moe_layers
    dense, moe = 3 * 64 * 256, 8 * 3 * 64 * 32 + 64 * 8
    attn = 4 * 64 * 64  # q, k, v, o; no bias without a qwen2 model_type
    assert d.params_per_rank(1) == 2 * 128 * 64 + 64 + 6 * (attn + 2 * 64) + len(moe_layers) * moe \
        + (6 - len(moe_layers)) * dense


def test_mixtral_experts_use_intermediate_size_and_qwen2_moe_has_a_gated_shared_expert():
    mixtral = decoder_from_config({"model_type": "mixtral", "hidden_size": 4096, "num_hidden_layers": 32,
                                   "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                                   "num_local_experts": 8, "vocab_size": 32000}, "MixtralForCausalLM", "cfg")
    assert mixtral.known and mixtral.moe.inter == 14336
    assert abs(mixtral.params_per_rank(1) / 46.7e9 - 1) < 0.01  # Mixtral-8x7B: 46.7 B
    q2 = decoder_from_config({"model_type": "qwen2_moe", "hidden_size": 2048, "num_hidden_layers": 24,
                              "num_attention_heads": 16, "intermediate_size": 5632, "moe_intermediate_size": 1408,
                              "shared_expert_intermediate_size": 5632, "num_experts": 60, "vocab_size": 151936},
                             "Qwen2MoeForCausalLM", "cfg")
    assert q2.moe.shared_gate and q2.moe.shared_inter == 5632
    assert abs(q2.params_per_rank(1) / 14.3e9 - 1) < 0.01  # Qwen1.5-MoE-A2.7B: 14.3 B


@pytest.mark.parametrize("cfg, kinds, window", [
    ({"model_type": "gemma2", "sliding_window": 4096}, (SLIDING, FULL, SLIDING, FULL, SLIDING, FULL), 4096),
    ({"model_type": "gemma3_text", "sliding_window": 1024, "sliding_window_pattern": 3},
     (SLIDING, SLIDING, FULL, SLIDING, SLIDING, FULL), 1024),
    # no pattern key (the stored Gemma 3 configs): transformers' default of 6, every sixth layer full
    ({"model_type": "gemma3_text", "sliding_window": 1024}, (SLIDING,) * 5 + (FULL,), 1024),
    ({"layer_types": ["linear_attention"] * 3 + ["full_attention"] + ["sliding_attention"] * 2},
     (LINEAR, LINEAR, LINEAR, FULL, SLIDING, SLIDING), 0),
    ({"full_attention_interval": 3}, (LINEAR, LINEAR, FULL, LINEAR, LINEAR, FULL), 0),
    ({"model_type": "mistral", "sliding_window": 4096, "max_position_embeddings": 32768}, (SLIDING,) * 6, 4096),
    ({"model_type": "qwen2", "sliding_window": 4096, "use_sliding_window": False}, (), 0),
    ({"model_type": "mistral", "sliding_window": None}, (), 0),
])
def test_layer_kinds(cfg, kinds, window):
    assert layer_kinds(cfg, 6) == (kinds, window)


def test_only_full_attention_layers_hold_the_whole_length_of_paged_kv():
    cfg = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 2304,
           "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
           "intermediate_size": 9216, "vocab_size": 256000, "sliding_window": 4096, "max_position_embeddings": 8192,
           "tie_word_embeddings": True}
    m = model_from_config(cfg)
    per_layer = 2 * 4 * 256 * 2
    assert m.kv_bytes_per_token() == 26 * per_layer  # V0 / before the hybrid KV manager: every layer whole
    # vLLM's pool: 2 groups of 13 layers; a request holds 512 blocks of 16 tokens in the full group and
    # cdiv(4095, 16) + 1 = 257 in the sliding one
    assert m.kv_bytes_per_token(max_model_len=8192, windowed=True) == 13 * 16 * per_layer * (512 + 257) / 8192
    # a window plus 2 x 4096 in-flight tokens covers all 8192, and the sliding group still takes one block more
    assert m.kv_bytes_per_token(max_model_len=8192, windowed=True, in_flight=8192) == 26 * per_layer * 1025 / 1024
    assert abs(m.params / 2.61e9 - 1) < 0.01  # gemma-2-2b: 2.61 B
    hybrid = model_from_config({**cfg, "architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next",
                                "full_attention_interval": 4, "sliding_window": None})
    assert not hybrid.decoder.known
    assert hybrid.kv_bytes_per_token() == 6 * per_layer  # 6 of 26 layers are full attention
    old = plan(m, "l4", "0.6.3", "serve", {"max_model_len": 8192})
    new = plan(m, "l4", "0.32.0", "serve", {"max_model_len": 8192, "max_num_batched_tokens": 512})
    assert any("sliding" in n for n in old.notes) and any("linear-attention" in n for n in
                                                          plan(hybrid, "l4", "0.32.0", "serve", {}).notes)
    assert new.kv_cache_tokens > old.kv_cache_tokens * 1.15  # sliding layers hold 4095 + 2 x 512 of 8192 tokens


def test_chatglm_style_configs_are_sized():
    cfg = {"architectures": ["ChatGLMModel"], "model_type": "chatglm", "num_layers": 28, "hidden_size": 4096,
           "num_attention_heads": 32, "multi_query_attention": True, "multi_query_group_num": 2, "kv_channels": 128,
           "ffn_hidden_size": 13696, "padded_vocab_size": 65024, "seq_length": 8192, "add_qkv_bias": True,
           "torch_dtype": "float16"}
    m = model_from_config(cfg)
    assert (m.layers, m.kv_heads, m.head_dim, m.vocab, m.max_position_embeddings) == (28, 2, 128, 65024, 8192)
    assert abs(m.params / 6.24e9 - 1) < 0.01  # ChatGLM3-6B: 6.24 B
    assert m.kv_bytes_per_token() == 2 * 28 * 2 * 128 * 2


@pytest.mark.parametrize("qc, method, per_weight", [
    ({"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0}, "fbgemm_fp8", 1.0),
    ({"quant_method": "mxfp4"}, "mxfp4", 0.5 + 1 / 32),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4", 0.5 + 1 / 16),
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, "fp8", 1.0),
])
def test_quantizations_that_were_refused_are_sized(qc, method, per_weight):
    q = read_quantization({"quantization_config": qc})
    assert (q.method, q.bytes_per_weight()) == (method, per_weight)


def test_mxfp4_quantizes_the_experts_only():
    cfg = {**_cfg("qwen3-30b-a3b"), "quantization_config": {"quant_method": "mxfp4"}}
    m = model_from_config(cfg)
    experts = m.decoder.expert_params()
    assert m.weights_bytes() == int((m.params - experts) * 2 + experts * (0.5 + 1 / 32))


def test_an_unknown_architecture_is_an_estimate_with_a_note_naming_it():
    cfg = {**_cfg("qwen3-30b-a3b"), "architectures": ["NovelForCausalLM"], "model_type": "novel"}
    p = plan(model_from_config(cfg), "a100-80", "0.32.0", "serve", {"max_model_len": 8192})
    w, kv = p.components["weights"], p.components["kv_cache"]
    assert w.basis.startswith("estimate") and "NovelForCausalLM" in w.basis and w.low_gib < w.value_gib < w.high_gib
    assert kv.basis.startswith("estimate") and "NovelForCausalLM" in kv.basis
    assert any("NovelForCausalLM" in n and "no vllm-memcheck rules" in n for n in p.notes)


@pytest.mark.parametrize("version, per_token", [
    ("0.6.3", 27 * 2 * 16 * 256 * 2),  # before MLA: K and V of every head, padded to 256 wide
    ("0.7.0", 27 * 2 * 16 * 192 * 2),  # qk_nope + qk_rope wide
    ("0.7.1", 27 * 576 * 2),  # MLA's latent cache from 0.7.1
    ("0.32.0", 31_104),
])
def test_mla_kv_per_token_follows_the_version(version, per_token):
    from diagnostics.versions import parse_version

    m = get_model(DATA / "deepseek-v2-lite")
    assert m.kv_bytes_per_token(version=parse_version(version)) == per_token
    p = plan(m, "a100-80", version, "serve", {"max_model_len": 4096, "max_num_seqs": 8})
    c = p.components
    assert p.kv_cache_tokens == int(c["kv_cache"].value_gib * GiB // (16 * per_token)) * 16


def test_mla_is_off_for_other_quantizations_in_0_7():
    from diagnostics.versions import parse_version

    cfg = {**_cfg("deepseek-v2-lite"), "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}
    m = model_from_config(cfg)
    assert m.kv_bytes_per_token(version=parse_version("0.7.2")) == 27 * 2 * 16 * 192 * 2
    assert m.kv_bytes_per_token(version=parse_version("0.8.0")) == 31_104


def test_gemma_ties_its_embeddings_when_the_config_does_not_say():
    """google/gemma-2-9b's config.json has no tie_word_embeddings: transformers' Gemma configs default it to true and
    vLLM's Gemma 2 has no lm_head (9,241,705,984 parameters on vLLM 0.32's meta build, tests/data/models/SOURCES.md)."""
    cfg = json.loads((Path(__file__).resolve().parents[1] / "data" / "models" / "gemma-2-9b" / "config.json")
                     .read_text())
    assert "tie_word_embeddings" not in cfg
    d = decoder_from_config(cfg, "Gemma2ForCausalLM", "gemma-2-9b")
    assert d.tied
    assert not decoder_from_config({**cfg, "tie_word_embeddings": False}, "Gemma2ForCausalLM", "x").tied
    assert not decoder_from_config({**cfg, "model_type": "llama"}, "LlamaForCausalLM", "x").tied
    p = plan(str(Path(__file__).resolve().parents[1] / "data" / "models" / "gemma-2-9b"), "a100-80", "0.32.0")
    assert p.components["weights"].value_gib == pytest.approx(9_241_705_984 * 2 / GiB, rel=1e-3)


@pytest.mark.parametrize("counts, version, size", [
    ([29, 5], None, 5), ([52, 10], "0.9.2", 10),  # Gemma 3 4B / 27B: the full layers set the group
    ([12, 13], "0.32.0", 13), ([12, 13], "0.12.0", 13), ([12, 13], "0.11.0", 12),  # gpt-oss-20b + eagle
    ([20, 28], "0.18.0", 28), ([20, 28], "0.17.0", 20),  # 1.25 x before 0.18, 1.5 x from it
    ([0, 26], None, 26),
])
def test_kv_group_size_follows_vllms_rule_by_version(counts, version, size):
    assert kv_group_size(counts, parse_version(version) if version else None) == size


def test_gemma3_sliding_layers_are_grouped_and_padded_as_vllm_does():
    """Gemma 3 4B (29 sliding + 5 full): 7 groups of 5 layers (one padding layer), a 4096-token request holds 256
    blocks in the full group and cdiv(min(1023 + 16384, 4096), 16) + 1 = 257 in each of the 6 sliding groups."""
    m = get_model("gemma-3-4b")
    assert m.attention_layers() == {FULL: 5, SLIDING: 29, LINEAR: 0} and m.window == 1024
    per_layer = 2 * 4 * 256 * 2
    got = m.kv_bytes_per_token(max_model_len=4096, windowed=True, in_flight=16384, block_size=16)
    assert got == 5 * 16 * per_layer * (256 + 6 * 257) / 4096
    assert got > 34 * per_layer  # the padding layer and the extra block cost more than every layer whole
    assert hybrid_pool_bytes_per_token({FULL: 5, SLIDING: 29}, per_layer, 16, 4096, 1024, 16384) == got
    # before the hybrid manager (V0, 0.9.0) every layer holds the whole length
    assert m.kv_bytes_per_token() == 34 * per_layer


NEXT = DATA / "qwen3-next-80b-a3b"
VLLM_ANSWERS = json.loads((Path(__file__).resolve().parents[1] / "data" / "vllm_exact" / "answers-0.32.0.json")
                          .read_text())


def test_qwen3_next_linear_attention_state_as_vllm_shapes_it():
    """conv 8,192 x 3 and 32 x 128 x 128 temporal values per layer at TP 1 (gated_delta_net_state_shape)."""
    state = get_model(NEXT).decoder.linear_state
    assert state.state_bytes(2, 4) == 2048 * 3 * 2 + 8 * 128 * 128 * 2 == 274_432  # bf16 ("auto"), per rank of 4
    # vLLM's own MambaSpec (stored answer, TP 1, the GPU's "auto" dtype): the state, before padding to a page
    mamba = next(r for r in VLLM_ANSWERS["qwen3-next-80b-a3b"]["kv_layers"] if r["type"] == "MambaSpec")
    assert state.state_bytes(2, 1) == mamba["state_bytes_per_sequence"] == 1_097_728
    assert dataclasses.replace(state, ssm_dtype_bytes=4).state_bytes(2, 1) == 8192 * 3 * 2 + 32 * 128 * 128 * 4
    with pytest.raises(ValueError):
        state.state_bytes(2, 3)


def test_qwen3_next_pool_counts_the_state_blocks_by_version():
    m = get_model(NEXT)
    per = 2 * 1 * 256 * 2  # one of 2 KV heads per rank at TP 4
    assert state_pool_block_size(per, 274_432) == 272  # 16 x cdiv(274,432, 16 x 1,024)
    # 12 full + 36 linear layers: 4 groups of 12; a 4096-token request: cdiv(4096, 272) = 16 attention blocks and
    # 2 state blocks in each of the 3 state groups (prefix caching's "align" mode, default from 0.26)
    new = m.kv_bytes_per_token(tp=4, max_model_len=4096, windowed=True, block_size=16)
    assert new == 12 * 272 * per * (16 + 3 * 2) / 4096 == 17_952
    mid = m.kv_bytes_per_token(tp=4, max_model_len=4096, windowed=True, version=parse_version("0.25.0"))
    assert mid == 12 * 272 * per * (16 + 3 * 1) / 4096  # one state block per group before 0.26
    old = m.kv_bytes_per_token(tp=4, max_model_len=4096, windowed=True, version=parse_version("0.19.0"))
    assert old == 12 * per  # not modelled before 0.20: the attention layers alone (the note says so)


def test_qwen3_next_pool_agrees_with_vllms_own_sizing_on_the_gpu_block():
    """vLLM 0.32's get_kv_cache_configs on the block size its GPU start-up picks (stored answer of
    diagnostics.vllm_exact.child, tests/tools/vllm_exact_answers.py)."""
    answer = VLLM_ANSWERS["qwen3-next-80b-a3b-tp4"]["kv_pool"]
    assert answer["gpu_hybrid_alignment"]["block_size"] == 272
    got = get_model(NEXT).kv_bytes_per_token(tp=4, max_model_len=4096, windowed=True, block_size=16)
    assert abs(got / answer["bytes_per_token"] - 1) < 0.005


@pytest.mark.parametrize("case", ["gemma-3-4b", "gemma-3-27b"])
def test_gemma3_pool_agrees_with_vllms_own_sizing(case):
    """vLLM 0.32 on the CPU (its backend's 32-token sliding blocks, 4,096 tokens in flight): within 0.5 %."""
    answer = VLLM_ANSWERS[case]["kv_pool"]
    got = get_model(case).kv_bytes_per_token(max_model_len=4096, windowed=True, in_flight=16384, block_size=16)
    assert abs(got / answer["bytes_per_token"] - 1) < 0.005


@pytest.mark.parametrize("name, rope", [
    ("gemma-3-4b", (131_072 * 8 + 131_072) * 256),  # linear x 8 for the global layers, unscaled local ones
    ("gemma-3-27b", (131_072 * 8 + 131_072) * 128),
    (DATA / "qwen3-next-80b-a3b", 262_144 * 64),  # partial_rotary_factor 0.25 of 256
    (DATA / "deepseek-v2-lite", 4096 * 40 * 64),  # deepseek_yarn: original length x factor, qk_rope_head_dim
    (DATA / "gemma-2-9b", 8192 * 256),
    ("qwen2.5-vl-7b", 128_000 * 4 * 128),  # M-RoPE: 4 x max_position_embeddings
])
def test_rotary_caches_are_counted_as_vllm_registers_them(name, rope):
    """The values of vLLM's cos_sin_cache buffers (get_rope): the stored vLLM answers' buffers hold them plus a few
    scale scalars."""
    assert get_model(name).rope_values == rope
    key = {"gemma-2-9b": "gemma-2-9b", "deepseek-v2-lite": "deepseek-v2-lite"}.get(Path(str(name)).name)
    if key:
        assert 0 <= VLLM_ANSWERS[key]["weights"]["buffer_bytes"] - rope * 2 < 1024


def test_phi3_longrope_keeps_its_short_and_long_caches():
    """Phi-3's longrope: vLLM concatenates the short cache (original_max_position_embeddings rows, a top-level key in
    Phi-3's config) and the long one (max_position_embeddings rows): phi3_long_rope_scaled_rope.py:80-95 (0.32)."""
    from diagnostics.decoder import rope_cache_values

    cfg = {"model_type": "phi3", "max_position_embeddings": 131_072, "original_max_position_embeddings": 4096,
           "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 48, "long_factor": [1.0] * 48}}
    assert rope_cache_values(cfg, 96) == (4096 + 131_072) * 96
    assert rope_cache_values({**cfg, "rope_scaling": None}, 96) == 131_072 * 96
