"""predict/terms.py: one function per memory term, each checked on a value worked out by hand."""

from __future__ import annotations

import dataclasses

import pytest

from diagnostics.models import MINICPM_V_2_6 as M
from diagnostics.predict.coefficients import DEFAULT
from diagnostics.predict.terms import (FIXED_KV_BASIS, NO_ENCODER_BASIS, Term, cuda_graph_term, encoder_term,
                                       kv_cache_term, largest_graph_batch, llm_pass_bytes, non_torch_term,
                                       sampler_bytes, weights_term)
from diagnostics.units import GiB


def test_weights_are_derived_parameter_bytes_sharded_and_offloaded():
    rope = 32_768 * 128 * 2  # Qwen2's cos/sin cache: max_position_embeddings x head_dim in bf16, whole per rank
    w = weights_term(M, {"tensor_parallel_size": 1}, 2)
    assert w.value_gib == w.low_gib == w.high_gib == pytest.approx((16_198_551_008 + rope) / GiB)
    assert weights_term(M, {"tensor_parallel_size": 2}, 2).value_gib == pytest.approx(
        (16_198_551_008 / 2 + rope) / GiB)
    assert weights_term(M, {"cpu_offload_gb": 4}, 2).value_gib == pytest.approx(w.value_gib - 4)
    assert "TP shard" in weights_term(M, {"tensor_parallel_size": 2}, 2).basis
    assert w.basis.startswith("derived")  # config arithmetic is not `exact` (issue 20)


def test_non_torch_adds_nccl_under_tensor_parallelism():
    one, two = non_torch_term({}, DEFAULT), non_torch_term({"tensor_parallel_size": 2}, DEFAULT)
    assert (one.value_gib, one.low_gib, one.high_gib) == DEFAULT.non_torch_gib
    assert two.value_gib == pytest.approx(one.value_gib + DEFAULT.nccl_extra_gib)


def test_encoder_term_range_depends_on_attention_kind():
    eager, linear = encoder_term(GiB, True, DEFAULT), encoder_term(GiB, False, DEFAULT)
    assert (eager.low_gib, eager.high_gib) == DEFAULT.encoder_range_eager
    assert (linear.low_gib, linear.high_gib) == DEFAULT.encoder_range_linear
    assert encoder_term(0, False, DEFAULT) == Term.exact(0.0, NO_ENCODER_BASIS)


def test_llm_pass_and_sampler_bytes_by_hand():
    # 8192 tokens x (2 x 3584 + 3 x 18944) x 2 B
    assert llm_pass_bytes(M, 8192, 2) == 8192 * (2 * 3584 + 3 * 18944) * 2
    assert sampler_bytes(M, 256, DEFAULT) == 256 * M.vocab_padded * 24


def test_an_eager_profile_pass_holds_the_layer_input_and_qwen2_keeps_gate_up():
    # vLLM runs the decoder loop as written in V0 / enforce_eager: the caller's layer input is a third hidden-size
    # tensor at the MLP (llama.py 0.6.4:338-342), and Qwen2MLP's gate_up is alive at down_proj (qwen2.py 0.6.4:88-92)
    llama = dataclasses.replace(M, architecture="LlamaForCausalLM", vision=None)
    qwen2 = dataclasses.replace(M, architecture="Qwen2ForCausalLM", vision=None)
    h, i = M.hidden, M.intermediate
    assert llm_pass_bytes(llama, 1000, 2, eager=True) == 1000 * (3 * h + 3 * i) * 2
    assert llm_pass_bytes(qwen2, 1000, 2, eager=True) == 1000 * (4 * h + 3 * i) * 2
    assert llm_pass_bytes(qwen2, 1000, 2, tp=2, eager=True) == 1000 * (4 * h + 3 * i // 2) * 2
    for m in (llama, qwen2, M):  # compiled (V1's default) and architectures whose loop is not checked: unchanged
        assert llm_pass_bytes(m, 1000, 2) == 1000 * (2 * h + 3 * i) * 2
    assert llm_pass_bytes(M, 1000, 2, eager=True) == 1000 * (2 * h + 3 * i) * 2


def test_cuda_graphs_scale_with_the_largest_captured_batch():
    assert cuda_graph_term({"enforce_eager": True, "max_num_seqs": 256}, "V1", DEFAULT).value_gib == 0.0
    v0 = cuda_graph_term({"max_num_seqs": 256}, "V0", DEFAULT)
    assert v0.value_gib == pytest.approx(0.2 + 0.8)  # batch 256 of cap 256
    v1 = cuda_graph_term({"max_num_seqs": 64}, "V1", DEFAULT)
    assert v1.value_gib == pytest.approx(0.2 + 0.6 * 128 / 512) and "batch 128" in v1.basis


def test_v1_before_0_10_captures_up_to_512_whatever_max_num_seqs():
    s = {"max_num_seqs": 2, "max_num_batched_tokens": 8192}
    assert largest_graph_batch(s, "V1", "0.8.4", 512) == 512  # [1, 2, 4, 8..512] in 0.8.x-0.9.x
    assert largest_graph_batch({**s, "max_num_batched_tokens": 256}, "V1", "0.9.2", 512) == 256
    assert largest_graph_batch(s, "V1", "0.10.0", 512) == 4  # min(2 x max_num_seqs, 512) from 0.10.0
    assert largest_graph_batch(s, "V0", "0.6.3", 256) == 2
    assert largest_graph_batch({**s, "enforce_eager": True}, "V1", "0.8.4", 512) == 0
    assert cuda_graph_term(s, "V1", DEFAULT, "0.8.4").value_gib > cuda_graph_term(s, "V1", DEFAULT, "0.32.0").value_gib


def test_tensor_parallel_widens_the_graph_range_upwards():
    one = cuda_graph_term({"max_num_seqs": 256}, "V0", DEFAULT, "0.5.4")
    four = cuda_graph_term({"max_num_seqs": 256, "tensor_parallel_size": 4}, "V0", DEFAULT, "0.5.4")
    assert four.value_gib == one.value_gib and four.high_gib == pytest.approx(one.high_gib * 2.5)
    assert four.high_gib >= 2.4 and "all-reduce buffers of TP 4" in four.basis  # issue #20: ~2.4 GiB measured


def test_kv_cache_is_budget_minus_terms_or_the_fixed_pool():
    s = {"block_size": 16, "tensor_parallel_size": 1, "kv_cache_memory_bytes": None}
    used = (Term.exact(15.0), Term(0.3, 0.1, 0.6, "e"), Term(2.0, 1.4, 2.8, "e"))
    kv = kv_cache_term(M, s, 2, 20.0, used, None)
    assert kv.value_gib == pytest.approx(20.0 - 17.3)
    assert kv.term.low_gib == pytest.approx(20.0 - 15.0 - 0.6 - 2.8)
    assert kv.term.high_gib == pytest.approx(20.0 - 15.0 - 0.1 - 1.4)
    per_block = 16 * M.kv_bytes_per_token(2)
    assert kv.blocks == int(2.7 * GiB // per_block) and kv.tokens == kv.blocks * 16
    fixed = kv_cache_term(M, {**s, "kv_cache_memory_bytes": 2 * GiB}, 2, 20.0, used, None)
    assert fixed.value_gib == 2.0 and fixed.term.basis == FIXED_KV_BASIS
    graphs = Term(0.5, 0.25, 1.0, "e")
    assert kv_cache_term(M, s, 2, 20.0, used, graphs).value_gib == pytest.approx(20.0 - 17.3 - 0.5)


def test_terms_read_their_coefficients_from_the_object_given():
    bigger = dataclasses.replace(DEFAULT, non_torch_gib=(1.0, 0.5, 1.5), sampler_bytes_per_logit=48)
    assert non_torch_term({}, bigger).value_gib == 1.0
    assert sampler_bytes(M, 1, bigger) == 2 * sampler_bytes(M, 1, DEFAULT)


def test_weights_with_mm_encoder_tp_mode_data_keep_the_tower_whole():
    from diagnostics.families.minicpmv import resampler_params, tower_params as vision_tower_params
    from diagnostics.predict.terms import weights_term

    sharded = weights_term(M, {"tensor_parallel_size": 2}, 2).value_gib
    data = weights_term(M, {"tensor_parallel_size": 2, "mm_encoder_tp_mode": "data"}, 2)
    tower = vision_tower_params(M.vision) + resampler_params(M.vision, M.hidden)
    assert data.value_gib - sharded == pytest.approx(tower * 2 / 2 / GiB)
    assert data.basis.startswith("derived") and "mm_encoder_tp_mode=data" in data.basis
    assert weights_term(M, {"tensor_parallel_size": 1, "mm_encoder_tp_mode": "data"}, 2).value_gib == \
        weights_term(M, {}, 2).value_gib


def test_encoder_term_widens_down_to_a_familys_own_low_figure():
    """MiniCPM-o's Whisper pass: eager scores give the figure, SDPA the low end (families/minicpmo.py)."""
    t = encoder_term(4 * GiB, False, DEFAULT, low_bytes=GiB)
    lo_f, hi_f = DEFAULT.encoder_range_linear
    assert (t.value_gib, t.low_gib, t.high_gib) == (4.0, lo_f, 4 * hi_f) and "SDPA" in t.basis
    assert encoder_term(4 * GiB, False, DEFAULT, low_bytes=8 * GiB) == encoder_term(4 * GiB, False, DEFAULT)


def test_rotary_caches_are_in_the_weights_as_vllm_counts_them():
    """Gemma 3 4B: 603,979,776 B of cos/sin caches (131,072 x 8 scaled + 131,072 local rows x 256 in bf16), vLLM
    0.32's own cos_sin_cache buffers (tests/unit/test_decoder.py), added whole on every TP rank; the basis says so
    and a note says max_model_len does not shrink them (0.56 GiB); MiniCPM-V-2_6's 8 MiB get no note."""
    from diagnostics.models import get_model

    notes: list[str] = []
    gemma = get_model("gemma-3-4b")
    w = weights_term(gemma, {"tensor_parallel_size": 1}, 2, notes)
    assert w.value_gib == pytest.approx((gemma.weights_bytes(2) + 603_979_776) / GiB)
    assert w.basis.startswith("derived") and w.basis.endswith("+ 576 MiB rotary caches")
    assert any("0.56 GiB of rotary cos/sin caches" in n and "max_model_len" in n for n in notes)
    bare = dataclasses.replace(gemma, rope_values=0)
    for tp in (1, 2, 4):  # whole on every rank
        assert (weights_term(gemma, {"tensor_parallel_size": tp}, 2).value_gib
                - weights_term(bare, {"tensor_parallel_size": tp}, 2).value_gib) * GiB == pytest.approx(603_979_776)
    quiet: list[str] = []
    mini = weights_term(M, {"tensor_parallel_size": 1}, 2, quiet)
    assert mini.basis.endswith("+ 8 MiB rotary caches") and not any("rotary" in n for n in quiet)


def test_rotary_caches_follow_the_vllm_version_and_the_pipeline_stage():
    """M-RoPE's cache has 4 x max_position rows from 0.7.2, max_position rows before (Qwen2.5-VL-7B: 128,000 x 128
    values in bf16 x 4 or x 1), and again 1 x for Qwen3-VL's decoder from 0.32 (262,144 x 128 in bf16: 64 MiB, the
    buffer bytes vLLM 0.32's own build reports, docs/vllm-exact.md); a pipeline stage without decoder layers holds
    none."""
    from diagnostics.models import get_model
    from diagnostics.predict.pipeline import Stage
    from diagnostics.predict.terms import rope_cache_bytes
    from diagnostics.versions import Version

    qwen = get_model("qwen2.5-vl-7b")
    assert rope_cache_bytes(qwen, 2, Version(0, 32, 0)) == 131_072_000 == rope_cache_bytes(qwen, 2)
    assert rope_cache_bytes(qwen, 2, Version(0, 7, 0)) == 32_768_000
    assert rope_cache_bytes(qwen, 2, Version(0, 7, 2)) == 131_072_000
    old = weights_term(qwen, {}, 2, None, None, Version(0, 6, 4))
    new = weights_term(qwen, {}, 2, None, None, Version(0, 32, 0))
    assert (new.value_gib - old.value_gib) * GiB == pytest.approx(131_072_000 - 32_768_000)
    qwen3 = get_model("qwen3-vl-8b")
    assert rope_cache_bytes(qwen3, 2, Version(0, 32, 0)) == 262_144 * 128 * 2 == rope_cache_bytes(qwen3, 2)
    assert rope_cache_bytes(qwen3, 2, Version(0, 31, 0)) == 4 * 262_144 * 128 * 2
    assert rope_cache_bytes(M, 2, stage=Stage(1, 2, 28, 28, False, True, True)) == 0
    assert rope_cache_bytes(M, 2, stage=Stage(1, 2, 14, 28, False, True, True)) == 32_768 * 128 * 2


def test_a_header_figure_with_rotary_caches_is_derived(tmp_path):
    """The caches are not in the checkpoint (persistent=False buffers): a header `exact` as stored becomes
    `derived` once they are added (a Llama with 4,096 positions x head_dim 16 in bf16: 128 KiB)."""
    from header_kit import llama_dir, write_header_only

    from diagnostics.models import get_model
    from diagnostics.predict.shards import rank_weights

    llama_dir(tmp_path, vocab=1024)
    t = {"model.embed_tokens.weight": ("BF16", (1024, 64)), "model.norm.weight": ("BF16", (64,)),
         "lm_head.weight": ("BF16", (1024, 64))}
    for i in range(2):  # the two layers of num_hidden_layers only: loaded as stored
        p = f"model.layers.{i}."
        t.update({p + n: ("BF16", shape) for n, shape in (
            ("self_attn.q_proj.weight", (64, 64)), ("self_attn.k_proj.weight", (32, 64)),
            ("self_attn.v_proj.weight", (32, 64)), ("self_attn.o_proj.weight", (64, 64)),
            ("mlp.gate_proj.weight", (128, 64)), ("mlp.up_proj.weight", (128, 64)), ("mlp.down_proj.weight", (64, 128)),
            ("input_layernorm.weight", (64,)), ("post_attention_layernorm.weight", (64,)))})
    write_header_only(tmp_path / "model.safetensors", t)
    model = get_model(tmp_path)
    rw = rank_weights(model.checkpoint, model, 2, 1)
    assert rw.basis.startswith("exact")
    w = weights_term(model, {}, 2)
    assert w.value_gib * GiB == pytest.approx(rw.value + 4096 * 16 * 2)
    assert w.basis == "derived" + rw.basis[len("exact"):] + " + 0.12 MiB rotary caches"


@pytest.mark.parametrize("case, model, version", [
    ("vllm-10517-ok-v064-llama31-8b-3090-20k", "calibration/models/llama-3.1-8b-instruct", "0.6.4"),
    ("gh-file-ok-v082-v0-llama32-3b-t4", "models/llama-3.2-3b", "0.8.2"),
])
def test_weights_are_what_vllm_printed_as_model_loading(case, model, version):
    """Real logs (tests/data/field_cases/plan-reports.jsonl): "Model loading took" is the parameters + the 32 MiB
    rotary cache (131,072 positions x head_dim 128 in 16 bits): Llama-3.1-8B 14.9888, Llama-3.2-3B 6.0160 GiB, within
    1 MiB (0.8.2 prints a device-memory difference: 6.0155 GiB planned); without the cache both were 0.03 GiB low."""
    import json
    from pathlib import Path

    from diagnostics.models import get_model
    from diagnostics.versions import parse_version

    data = Path(__file__).resolve().parents[1] / "data"
    printed = next(json.loads(line) for line in (data / "field_cases" / "plan-reports.jsonl").open()
                   if json.loads(line)["id"] == case)["numbers"]["weights_gib"]
    m = get_model(data / model)
    w = weights_term(m, {"tensor_parallel_size": 1}, 2, None, None, parse_version(version))
    assert abs(w.value_gib - printed) < 1 / 1024, (w.value_gib, printed)
    assert w.basis.endswith("+ 32 MiB rotary caches")
