"""predict/shards.py: weights per TP rank from a checkpoint's safetensors headers, and the issue-20 done-when
numbers on header-only checkpoints with the real tensor names and shapes of Qwen3-30B-A3B and DeepSeek-V2-Lite.

`header_kit.write_header_only` writes a real safetensors header without the data (only the header is ever read);
the first test checks that writer against the safetensors package."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from diagnostics.checkpoint import read_header
from diagnostics.models import get_model
from diagnostics.predict.estimator import plan
from diagnostics.predict.shards import classify, rank_weights
from diagnostics.units import GiB
from header_kit import llama_dir, write_header_only

DATA = Path(__file__).resolve().parents[1] / "data" / "models"


def test_the_header_writer_agrees_with_the_safetensors_package(tmp_path):
    arrays = {"a.weight": np.zeros((3, 4), np.float16), "b.qweight": np.zeros((2, 2), np.int32)}
    save_file(arrays, str(tmp_path / "real.safetensors"))
    mine = write_header_only(tmp_path / "mine.safetensors", {"a.weight": ("F16", (3, 4)), "b.qweight": ("I32", (2, 2))})
    real = {t.name: t for t in read_header(tmp_path / "real.safetensors")}
    assert {t.name: t for t in read_header(mine)} == real


@pytest.mark.parametrize("name, kind", [
    ("model.embed_tokens.weight", "vocab"), ("lm_head.weight", "vocab"),
    ("model.layers.0.self_attn.q_proj.weight", "column"), ("model.layers.0.self_attn.k_proj.qweight", "column"),
    ("model.layers.0.self_attn.o_proj.weight", "row"), ("model.layers.0.self_attn.o_proj.bias", "row_bias"),
    ("model.layers.0.mlp.down_proj.weight_scale", "row"), ("model.layers.3.mlp.experts.7.down_proj.weight", "expert"),
    ("model.layers.3.mlp.experts.gate_up_proj_blocks", "expert"), ("model.layers.3.mlp.gate.weight", "replicated"),
    ("model.layers.3.mlp.shared_experts.gate_proj.weight", "column"), ("model.layers.0.input_layernorm.weight", "norm"),
    ("model.layers.0.self_attn.kv_a_proj_with_mqa.weight", "replicated"),
    ("model.layers.0.self_attn.kv_b_proj.weight", "column"),
    ("transformer.encoder.layers.0.self_attention.query_key_value.weight", "column"),
    ("transformer.encoder.layers.0.mlp.dense_4h_to_h.weight", "row"), ("model.layers.0.mixer.A_log", "unknown"),
    ("model.layers.0.mlp.down_proj.weight.absmax", "row"),  # bitsandbytes 4-bit: the parent module decides
    ("model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4", "column"),
    ("model.layers.0.self_attn.v_proj.weight.nested_absmax", "column"),
    ("output.weight", "vocab"), ("model.tok_embeddings.weight", "vocab"),  # InternLM2
    ("model.layers.0.attention.wqkv.weight", "column"), ("model.layers.0.feed_forward.w2.weight", "row"),
    ("model.layers.0.block_sparse_moe.experts.3.w1.weight", "expert"),  # Mixtral
    ("model.layers.0.block_sparse_moe.gate.weight", "replicated"),
    ("model.layers.3.mlp.gate.e_score_correction_bias", "replicated"),  # DeepSeek-V3
])
def test_tensor_names_map_to_vllms_layer_kinds(name, kind):
    assert classify(name) == kind


def test_per_rank_bytes_follow_vllms_split_replicate_and_padding_rules(tmp_path):
    m = llama_dir(tmp_path)
    one = rank_weights(m.checkpoint, m, 2, 1)
    assert one.basis.startswith("derived")  # layer 2 dropped, 1000 vocab rows padded to 1024
    assert one.value == pytest.approx(m.params * 2)  # = the config arithmetic of the same model
    two = rank_weights(m.checkpoint, m, 2, 2)
    vocab = 2 * 512 * 64 * 2
    per_layer = (64 * 64 * 2 / 2 + 2 * 16 * 64 + 3 * 64 * 128 / 2) * 2 + 2 * 64 * 2  # kv: 1 head per rank, norms whole
    assert two.value == pytest.approx(vocab + 2 * per_layer + 64 * 2)
    assert two.value == pytest.approx(m.decoder.params_per_rank(2) * 2)
    four = rank_weights(m.checkpoint, m, 2, 4)  # 2 kv heads on 4 ranks: one replicated head each
    assert four.value == pytest.approx(m.decoder.params_per_rank(4) * 2)


def test_float32_checkpoints_are_cast_to_the_run_dtype_and_a_tied_head_is_not_loaded(tmp_path):
    m = llama_dir(tmp_path, dtype="F32", tied=True, vocab=1024)
    w = rank_weights(m.checkpoint, m, 2, 1)
    assert w.value == pytest.approx(m.params * 2) and w.stored_bytes > 2 * w.value
    assert w.basis.startswith("derived")


def test_only_the_language_models_layers_past_num_hidden_layers_are_dropped(tmp_path):
    m = llama_dir(tmp_path, vocab=1024)
    extra = {t.name: (t.dtype, t.shape) for t in m.checkpoint.tensors}
    extra["vision_tower.encoder.layers.5.mlp.fc1.weight"] = ("BF16", (8, 8))  # a tower deeper than the LLM
    write_header_only(tmp_path / "model.safetensors", extra)
    with_tower = rank_weights(get_model(tmp_path).checkpoint, m, 2, 1)
    assert with_tower.value == pytest.approx(m.params * 2 + 8 * 8 * 2)


def test_a_vision_language_checkpoints_header_is_derived_not_exact(tmp_path):
    import dataclasses

    m = llama_dir(tmp_path, vocab=1024)
    write_header_only(tmp_path / "model.safetensors", {t.name: (t.dtype, t.shape) for t in m.checkpoint.tensors
                                                       if ".layers.2." not in t.name})  # nothing vLLM changes
    m = get_model(tmp_path)
    assert rank_weights(m.checkpoint, m, 2, 1).basis.startswith("exact")
    vlm = dataclasses.replace(m, vision=get_model("qwen2.5-vl-7b").vision)
    w = rank_weights(m.checkpoint, vlm, 2, 1)
    assert w.basis.startswith("derived") and "vision-language" in w.basis


def test_a_known_checkpoint_loaded_as_stored_is_exact(tmp_path):
    cfg = json.loads((DATA / "deepseek-v2-lite" / "config.json").read_text())
    cfg.update(num_hidden_layers=1, vocab_size=1024, tie_word_embeddings=True)  # no lm_head in the table
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    write_header_only(tmp_path / "model.safetensors", {"model.embed_tokens.weight": ("BF16", (1024, 2048)),
                                                       "model.layers.0.input_layernorm.weight": ("BF16", (2048,))})
    m = get_model(tmp_path)
    w = rank_weights(m.checkpoint, m, 2, 1)
    assert w.basis.startswith("exact") and w.value == w.low == w.high == (1024 + 1) * 2048 * 2


def test_unmatched_tensors_widen_the_range_and_an_unknown_architecture_is_an_estimate(tmp_path):
    m = llama_dir(tmp_path)
    with_extra = dict((t.name, (t.dtype, t.shape)) for t in m.checkpoint.tensors)
    with_extra["model.layers.0.mixer.A_log"] = ("BF16", (1 << 20,))
    write_header_only(tmp_path / "model.safetensors", with_extra)
    w = rank_weights(get_model(tmp_path).checkpoint, m, 2, 2)
    assert w.basis.startswith("estimate") and "A_log" in w.basis
    assert w.high - w.low == pytest.approx(2 * (1 << 20) / 2)

    novel = tmp_path / "novel"
    novel.mkdir()
    m = llama_dir(novel, arch="NovelForCausalLM")
    p = plan(novel, "a100-80", "0.32.0", "serve", {"max_model_len": 4096})
    w = p.components["weights"]
    assert w.basis.startswith("estimate") and "NovelForCausalLM" in w.basis and w.low_gib < w.value_gib < w.high_gib
    # sized from the header, + the rotary cache (4,096 positions x head_dim 16 in bf16)
    assert w.value_gib * GiB == pytest.approx(rank_weights(m.checkpoint, m, 2, 1).value + 4096 * 16 * 2)
    assert any("NovelForCausalLM" in n for n in p.notes)
    assert p.components["kv_cache"].basis.startswith("estimate")
    assert not any(t.basis.startswith("exact") for k, t in p.components.items() if k in ("weights", "kv_cache"))


def _moe_header(cfg: dict, layer_extra) -> dict:
    """The tensor names and shapes a Hugging Face checkpoint of this config stores (bf16)."""
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    t = {"model.embed_tokens.weight": ("BF16", (v, h)), "lm_head.weight": ("BF16", (v, h)),
         "model.norm.weight": ("BF16", (h,))}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": ("BF16", (h,)), p + "post_attention_layernorm.weight": ("BF16", (h,))})
        t.update(layer_extra(p, i))
    return t


def _experts(p, n, h, inter):
    out = {}
    for e in range(n):
        out.update({f"{p}mlp.experts.{e}.gate_proj.weight": ("BF16", (inter, h)),
                    f"{p}mlp.experts.{e}.up_proj.weight": ("BF16", (inter, h)),
                    f"{p}mlp.experts.{e}.down_proj.weight": ("BF16", (h, inter))})
    return out


def test_done_when_qwen3_30b_a3b_tp4_weights_per_rank_from_the_header(tmp_path):
    """vLLM printed 14.25 GiB of weights per rank at tensor_parallel_size=4 (issue 20); within 4 %."""
    shutil.copy(DATA / "qwen3-30b-a3b" / "config.json", tmp_path / "config.json")
    cfg = json.loads((tmp_path / "config.json").read_text())
    h, hd = cfg["hidden_size"], cfg["head_dim"]

    def layer(p, i):
        return {p + "self_attn.q_proj.weight": ("BF16", (32 * hd, h)), p + "self_attn.k_proj.weight": ("BF16", (4 * hd, h)),
                p + "self_attn.v_proj.weight": ("BF16", (4 * hd, h)), p + "self_attn.o_proj.weight": ("BF16", (h, 32 * hd)),
                p + "self_attn.q_norm.weight": ("BF16", (hd,)), p + "self_attn.k_norm.weight": ("BF16", (hd,)),
                p + "mlp.gate.weight": ("BF16", (128, h)), **_experts(p, 128, h, 768)}

    write_header_only(tmp_path / "model.safetensors", _moe_header(cfg, layer))
    p = plan(tmp_path, "a10", "0.8.5", "serve", {"tensor_parallel_size": 4, "max_model_len": 8192})
    w = p.components["weights"]
    assert abs(w.value_gib / 14.25 - 1) < 0.04, w.value_gib
    assert w.basis.startswith("derived") and "headers" in w.basis  # split by rule, not `exact`
    assert w.value_gib == pytest.approx(get_model(DATA / "qwen3-30b-a3b").decoder.params_per_rank(4) * 2 / GiB,
                                        rel=1e-3)  # header path and config path agree


def test_done_when_deepseek_v2_lite_weights_and_mla_kv_from_the_header(tmp_path):
    """29.2 GiB of weights and 31,104 KV bytes per token (27 layers x 576 x 2 B); both within 5 %."""
    shutil.copy(DATA / "deepseek-v2-lite" / "config.json", tmp_path / "config.json")
    cfg = json.loads((tmp_path / "config.json").read_text())
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]

    def layer(p, i):
        t = {p + "self_attn.q_proj.weight": ("BF16", (heads * 192, h)),
             p + "self_attn.kv_a_proj_with_mqa.weight": ("BF16", (576, h)),
             p + "self_attn.kv_a_layernorm.weight": ("BF16", (512,)),
             p + "self_attn.kv_b_proj.weight": ("BF16", (heads * 256, 512)),
             p + "self_attn.o_proj.weight": ("BF16", (h, heads * 128))}
        if i == 0:
            return {**t, p + "mlp.gate_proj.weight": ("BF16", (10944, h)), p + "mlp.up_proj.weight": ("BF16", (10944, h)),
                    p + "mlp.down_proj.weight": ("BF16", (h, 10944))}
        return {**t, p + "mlp.gate.weight": ("BF16", (64, h)), **_experts(p, 64, h, 1408),
                p + "mlp.shared_experts.gate_proj.weight": ("BF16", (2816, h)),
                p + "mlp.shared_experts.up_proj.weight": ("BF16", (2816, h)),
                p + "mlp.shared_experts.down_proj.weight": ("BF16", (h, 2816))}

    write_header_only(tmp_path / "model.safetensors", _moe_header(cfg, layer))
    m = get_model(tmp_path)
    p = plan(m, "a100-80", "0.32.0", "serve", {"max_model_len": 8192})
    w = p.components["weights"]
    # bytes as stored, TP 1, + vLLM's 20 MiB rotary cache (derived: not in the checkpoint)
    assert abs(w.value_gib / 29.2 - 1) < 0.05 and w.basis.startswith("derived") and "loaded as stored" in w.basis
    assert abs(m.kv_bytes_per_token() / 31_104 - 1) < 0.05
    assert m.kv_bytes_per_token(tp=2) == m.kv_bytes_per_token()  # the MLA latent is on every rank
    two = plan(m, "a100-80", "0.32.0", "serve", {"max_model_len": 8192, "tensor_parallel_size": 2})
    assert two.components["weights"].basis.startswith("derived")
    # q_proj/kv_b/o_proj and experts split; kv_a_proj_with_mqa, norms and the router whole on each rank
    assert 14.6 < two.components["weights"].value_gib < 14.8
