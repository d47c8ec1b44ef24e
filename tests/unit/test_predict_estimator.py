"""plan(): the seed's facts, field-case calibration points, KV arithmetic and the verdict rules."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from diagnostics.cards import get_card
from diagnostics.errors import UsageError
from diagnostics.predict.estimator import plan
from diagnostics.models import MINICPM_V_2_6
from diagnostics.outcomes import OUTCOMES, PHASES

SEED_FIX = {"max_model_len": 4096, "max_num_seqs": 32, "gpu_memory_utilization": 1.0}
L4_EXAMPLE = {"max_model_len": 4096, "max_num_seqs": 2, "limit_mm_per_prompt": {"image": 1, "video": 0}}
V0_ERA = ["0.5.5", "0.6.0", "0.6.1", "0.6.2", "0.6.3", "0.6.4", "0.6.5", "0.6.6"]


@pytest.mark.parametrize("version", V0_ERA)
@pytest.mark.parametrize("entry", ["llm", "serve"])
def test_seed_3090_defaults_fail_in_the_vision_encoder(version, entry):
    p = plan("minicpm-v-2_6", "3090", version, entry)
    assert (p.verdict, p.failing_phase) == ("oom_profile", "vision_encoder")
    assert p.profile["encoder_items"] == 256 and p.profile["vit_tokens"] == 262_144
    assert p.peak_gib > get_card("3090").total_gib


@pytest.mark.parametrize("version", ["0.5.4"] + V0_ERA)
def test_seed_3090_fix_fits(version):
    p = plan("minicpm-v-2_6", "3090", version, "llm", SEED_FIX)
    assert p.verdict == "ok", p.notes
    assert p.profile["encoder_items"] == 32
    assert p.kv_cache_tokens >= 4096 and p.peak_gib < 23.69


@pytest.mark.parametrize("version", ["0.5.4", "0.5.5"])
def test_vllm7721_l20_defaults_fail_in_profile(version):
    p = plan("minicpm-v-2_6", "l20", version)
    assert (p.verdict, p.failing_phase) == ("oom_profile", "vision_encoder")


def test_vllm7721_a800_peak_near_70_gb():
    # the maintainer saw the vpm forward of the profile run reach ~70 GB on an A800 at defaults
    p = plan("minicpm-v-2_6", "a100-80", "0.5.4")
    c = p.components
    fixed = p.peak_gib - c["activation_peak"].value_gib
    observed_gib = 70e9 / 2**30
    assert fixed + c["activation_peak"].low_gib <= observed_gib <= fixed + c["activation_peak"].high_gib
    assert p.verdict == "ok"  # an 80 GB card survives it (OpenBMB/MiniCPM-V#392: A100-80G starts)


def test_minicpmv640_a10_tried_to_allocate_4_gib():
    # A10 (22.18 GiB), vllm serve, max_model_len 2048, util 1.0: "Tried to allocate 4.00 GiB ... 18.29 GiB is
    # allocated by PyTorch". 64 dummy slices (MBT floor 4096 // 64) -> fp32 softmax 64 x 16 x 1024^2 x 4 B.
    p = plan("minicpm-v-2_6", "a10", "0.6.1", "serve", {"max_model_len": 2048, "gpu_memory_utilization": 1.0})
    assert (p.verdict, p.failing_phase) == ("oom_profile", "vision_encoder")
    assert p.profile["largest_alloc_gib"] == 4.0
    before_failing_alloc = p.peak_gib - p.cuda_context_gib - p.components["non_torch"].value_gib \
        - 1.5 * p.profile["largest_alloc_gib"]  # the fp32 softmax (4 GiB) and its bf16 cast (2 GiB) not yet there
    assert abs(before_failing_alloc - 18.29) < 1.0


@pytest.mark.parametrize("version", ["0.10.2", "0.20.0", "0.32.0", "0.33.0"])
def test_vllm_example_settings_fit_on_l4(version):
    p = plan("minicpm-v-2_6", "l4", version, "llm", L4_EXAMPLE)
    assert p.verdict == "ok" and p.engine == "V1"
    assert p.profile["encoder_items"] == 2 and p.profile["encoder_slices"] == 20


def test_weights_and_offload_and_tp():
    p = plan("minicpm-v-2_6", "a100-80", "0.33.0")
    rope = 32_768 * 128 * 2  # + vLLM's rotary cos/sin cache (get_rope buffer, not offloaded)
    assert p.components["weights"].value_gib == pytest.approx((16_198_551_008 + rope) / 2**30)
    # config arithmetic by vLLM's layer rules is derived, not exact (issue 20: exact = header or vLLM's code)
    assert p.components["weights"].basis.startswith("derived")
    off = plan("minicpm-v-2_6", "a100-80", "0.33.0", overrides={"cpu_offload_gb": 4})
    assert off.components["weights"].value_gib == pytest.approx((16_198_551_008 + rope) / 2**30 - 4)
    tp = plan("minicpm-v-2_6", "a100-80", "0.33.0", overrides={"tensor_parallel_size": 2})
    assert tp.components["weights"].value_gib == pytest.approx((16_198_551_008 / 2 + rope) / 2**30)  # cache whole
    fp32 = plan("minicpm-v-2_6", "a100-80", "0.33.0", overrides={"dtype": "float32"})
    assert fp32.components["weights"].value_gib == pytest.approx(2 * (16_198_551_008 + rope) / 2**30)  # cache too


def test_v0_kv_formula_and_block_flooring():
    p = plan("minicpm-v-2_6", "3090", "0.6.3", "llm", SEED_FIX)
    c = p.components
    budget = 1.0 * 23.69 - (c["weights"].value_gib + c["non_torch"].value_gib + c["activation_peak"].value_gib)
    assert c["kv_cache"].value_gib == pytest.approx(budget)
    assert p.kv_cache_tokens == int(budget * 2**30 // (16 * 57_344)) * 16
    assert c["kv_cache"].low_gib <= c["kv_cache"].value_gib <= c["kv_cache"].high_gib


def test_v1_subtracts_cuda_graphs_from_020():
    a = plan("minicpm-v-2_6", "l4", "0.19.0", "llm", {**L4_EXAMPLE, "gpu_memory_utilization": 0.9})
    b = plan("minicpm-v-2_6", "l4", "0.20.0", "llm", {**L4_EXAMPLE, "gpu_memory_utilization": 0.9})
    g = b.components["cuda_graph"].value_gib
    assert g > 0
    assert a.components["kv_cache"].value_gib - b.components["kv_cache"].value_gib == pytest.approx(g, abs=0.05)
    eager = plan("minicpm-v-2_6", "l4", "0.20.0", "llm", {**L4_EXAMPLE, "enforce_eager": True})
    assert eager.components["cuda_graph"].value_gib == 0


def test_kv_cache_memory_bytes_fixes_the_pool():
    p = plan("minicpm-v-2_6", "3090", "0.32.0", "serve", {"kv_cache_memory_bytes": 2 * 2**30, "max_model_len": 8192})
    assert p.kv_cache_tokens == (2 * 2**30 // (16 * 57_344)) * 16 == 37_440
    assert p.components["kv_cache"].basis.startswith("derived: kv_cache_memory_bytes (your setting")
    assert p.verdict == "ok"


def test_no_kv_cache_when_budget_below_weights():
    p = plan("minicpm-v-2_6", "a100-40", "0.33.0", "serve", {"gpu_memory_utilization": 0.4})
    assert (p.verdict, p.failing_phase) == ("no_kv_cache", "kv_cache")
    assert p.kv_cache_tokens == 0


def test_kv_too_small_for_max_model_len():
    p = plan("minicpm-v-2_6", "3090", "0.6.3", "llm", {"max_num_seqs": 8, "gpu_memory_utilization": 0.85})
    assert p.verdict == "kv_too_small"
    assert 0 < p.kv_cache_tokens < 32768


@pytest.mark.parametrize("version, expected", [("0.9.1", "insufficient_free_memory"), ("0.33.0", "insufficient_free_memory"),
                                               ("0.9.0", "ok"), ("0.6.3", "ok")])
def test_util_1_on_v1_fails_the_free_memory_check(version, expected):
    p = plan("minicpm-v-2_6", "3090", version, "llm", SEED_FIX)
    assert p.verdict == expected
    if expected != "ok":
        assert p.failing_phase == "startup_check"


def test_v0_graphs_must_fit_in_the_slack():
    text_only = {"max_model_len": 4096, "gpu_memory_utilization": 1.0, "limit_mm_per_prompt": {"image": 0}}
    p = plan("minicpm-v-2_6", "3090", "0.6.3", "llm", text_only)
    assert p.profile["encoder_items"] == 0
    assert (p.verdict, p.failing_phase) == ("oom_cuda_graph", "cuda_graph")
    assert plan("minicpm-v-2_6", "3090", "0.6.3", "llm", {**text_only, "enforce_eager": True}).verdict == "ok"


def test_skip_mm_profiling_removes_the_encoder_term():
    p = plan("minicpm-v-2_6", "3090", "0.33.0", "llm", {"skip_mm_profiling": True})
    assert p.components["encoder_profile"].value_gib == 0
    assert any("skip_mm_profiling" in n for n in p.notes)
    assert plan("minicpm-v-2_6", "3090", "0.33.0", "llm").components["encoder_profile"].value_gib > 1


def test_skip_mm_profiling_says_what_it_no_longer_guards():
    held = {"max_model_len": 8192}
    measured = plan("minicpm-v-2_6", "3090", "0.32.0", "llm", held)
    skipped = plan("minicpm-v-2_6", "3090", "0.32.0", "llm", {**held, "skip_mm_profiling": True})
    note = next(n for n in skipped.notes if n.startswith("skip_mm_profiling"))
    pr = measured.profile
    assert "no longer guards requests" in note
    assert f"{pr['encoder_items']} {pr['modality']} items of {pr['tokens_per_item']:,} tokens" in note
    assert f"about {measured.components['encoder_profile'].value_gib:.2f} GiB" in note


def test_v1_worked_defaults_through_plan():
    rows = {("3090", "serve"): (2048, 2, 32), ("3090", "llm"): (8192, 8, 128), ("h100-80", "serve"): (8192, 8, 128),
            ("h100-80", "llm"): (16384, 16, 256)}
    for (card, entry), (budget, items, slices) in rows.items():
        p = plan("minicpm-v-2_6", card, "0.33.0", entry)
        assert (p.profile["encoder_budget_tokens"], p.profile["encoder_items"], p.profile["encoder_slices"]) == \
            (budget, items, slices)


def test_eager_attention_only_before_063():
    assert plan("minicpm-v-2_6", "3090", "0.6.2").profile["eager_vision_attention"]
    assert not plan("minicpm-v-2_6", "3090", "0.6.3").profile["eager_vision_attention"]
    # the L^2 scores make the same 256 slices ~3x more expensive
    assert plan("minicpm-v-2_6", "3090", "0.6.2").components["encoder_profile"].value_gib > \
        3 * plan("minicpm-v-2_6", "3090", "0.6.3").components["encoder_profile"].value_gib


def test_to_json_shape():
    doc = plan("minicpm-v-2_6", "3090", "0.6.3").to_json()
    assert set(doc) == {"verdict", "vllm_version", "engine", "card", "settings", "components", "profile", "peak_gib",
                        "kv_cache_tokens", "culprits", "fix"}
    assert doc["card"] == {"name": "3090", "total_gib": 23.69}
    assert set(doc["components"]) == {"weights_gib", "non_torch_gib", "encoder_profile_gib", "activation_peak_gib",
                                      "kv_cache_gib", "cuda_graph_gib"}
    assert set(doc["profile"]) == {"encoder_items", "encoder_slices", "vit_tokens", "max_num_batched_tokens"}
    assert doc["components"]["weights_gib"] == 15.09 and doc["verdict"] == "oom_profile"
    json.dumps(doc)  # serialisable


def test_every_term_has_a_range_and_basis():
    p = plan("minicpm-v-2_6", "3090", "0.33.0", "serve")
    for name, t in p.components.items():
        assert t.low_gib <= t.value_gib <= t.high_gib, name
        assert t.basis.split(":")[0] in ("exact", "derived", "estimate"), name
    assert p.components["non_torch"].basis.startswith("estimate")
    assert p.verdict in OUTCOMES and (p.failing_phase is None or p.failing_phase in PHASES)


def test_text_model_from_config(tmp_path):
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24,
           "num_attention_heads": 14, "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
           "max_position_embeddings": 32768, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    p = plan(str(tmp_path), "t4", "0.33.0", "serve", {"gpu_memory_utilization": 0.9})
    assert p.profile["encoder_items"] == 0 and p.components["encoder_profile"].value_gib == 0
    assert p.verdict == "ok" and p.kv_cache_tokens > 32768


def test_cpu_card():
    p = plan("minicpm-v-2_6", "cpu", "0.32.0", "llm", {"max_model_len": 4096})
    assert p.verdict == "unknown" and p.kv_cache_tokens is None
    eager = plan("minicpm-v-2_6", "cpu", "0.32.0", "llm",
                 {"max_model_len": 4096, "enforce_eager": True, "kv_cache_memory_bytes": 2**30})
    assert eager.components["encoder_profile"].value_gib == 0  # the CPU worker skips profile_run in eager mode
    assert eager.kv_cache_tokens == 2**30 // (16 * 57_344) * 16 and eager.verdict == "ok"


@pytest.mark.parametrize("kwargs", [dict(card="rtx9090"), dict(model="llama-99b"), dict(version="0.3.3"),
                                    dict(overrides={"max_num_seq": 3}), dict(entrypoint="cli")])
def test_bad_input_is_usage_error(kwargs):
    args = dict(model="minicpm-v-2_6", card="3090", version="0.6.3", entrypoint="llm", overrides=None) | kwargs
    with pytest.raises(UsageError):
        plan(**args)


def test_plan_does_not_touch_its_inputs():
    o = {"max_num_seqs": 32, "limit_mm_per_prompt": {"image": 1}}
    before = json.dumps(o, sort_keys=True)
    a = plan("minicpm-v-2_6", "3090", "0.6.3", "llm", o).to_json()
    b = plan("minicpm-v-2_6", "3090", "0.6.3", "llm", o).to_json()
    assert json.dumps(o, sort_keys=True) == before and a == b
    assert plan(MINICPM_V_2_6, get_card("3090"), "0.6.3").verdict == "oom_profile"


def test_core_imports_neither_torch_nor_vllm():
    code = ("import sys; from diagnostics.predict.estimator import plan; plan('minicpm-v-2_6', '3090', None); "
            "print('torch' in sys.modules, 'vllm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


@hsettings(max_examples=60, deadline=None)
@given(version=st.sampled_from(["0.5.5", "0.6.3", "0.9.2", "0.20.0", "0.33.0"]),
       card=st.sampled_from(["3090", "l4", "a100-80", "h100-80"]),
       mml=st.sampled_from([2048, 4096, 8192, 32768]), seqs=st.sampled_from([1, 8, 32, 256]))
def test_more_sequences_never_lower_the_peak(version, card, mml, seqs):
    base = {"max_model_len": mml}
    a = plan("minicpm-v-2_6", card, version, "llm", {**base, "max_num_seqs": seqs})
    b = plan("minicpm-v-2_6", card, version, "llm", {**base, "max_num_seqs": seqs * 2})
    assert b.peak_gib >= a.peak_gib - 1e-9


@hsettings(max_examples=40, deadline=None)
@given(version=st.sampled_from(["0.6.3", "0.10.2", "0.33.0"]), util=st.floats(0.5, 0.95))
def test_higher_utilization_never_shrinks_kv(version, util):
    o = {"max_model_len": 4096, "max_num_seqs": 16}
    a = plan("minicpm-v-2_6", "a100-80", version, "llm", {**o, "gpu_memory_utilization": util})
    b = plan("minicpm-v-2_6", "a100-80", version, "llm", {**o, "gpu_memory_utilization": min(util + 0.04, 0.96)})
    assert b.kv_cache_tokens >= a.kv_cache_tokens


def test_llama32_vision_is_refused_for_vllm_0_11_and_later_and_planned_before():
    with pytest.raises(UsageError, match=r"removed in 0\.11\.0"):
        plan("llama-3.2-11b-vision", "a100-80", "0.32.0")
    p = plan("llama-3.2-11b-vision", "a100-80", "0.6.3", overrides={"max_model_len": 1024})
    assert p.verdict == "oom_profile" and p.profile["encoder_items"] == 256  # vllm#9445: OOM at the defaults
    assert plan("llama-3.2-11b-vision", "a100-80", "0.6.3",
                overrides={"max_model_len": 1024, "max_num_seqs": 32, "enforce_eager": True}).verdict == "ok"


def test_qwen25vl_weights_are_vllms_parameter_and_rotary_cache_bytes():
    p = plan("qwen2.5-vl-7b", "h100-80", "0.32.0")  # + M-RoPE's 4 x 128,000 x 128 cache in bf16
    assert p.components["weights"].value_gib * 2**30 == pytest.approx(16_584_333_312 + 131_072_000)


def test_qwen25vl_field_logs_the_tower_coefficient_was_fitted_on():
    # vllm#16570 (V0, 0.8.3, 72B, TP 4, A100-40): printed activation peak 2.51 GiB, KV 0.04-0.13 GiB per GPU
    p = plan("qwen2.5-vl-72b", "a100-40", "0.8.3", overrides={
        "use_v1": False, "tensor_parallel_size": 4, "gpu_memory_utilization": 0.95, "max_num_seqs": 2,
        "max_model_len": 4096, "limit_mm_per_prompt": {"image": 1, "video": 0}})
    assert 2.0 < p.components["activation_peak"].value_gib < 3.2 and p.components["kv_cache"].value_gib < 0.2
    # vllm#18124: Qwen2.5-VL-3B, `vllm serve` at gpu_memory_utilization 0.3 on an 80 GB card: no KV cache
    assert plan("qwen2.5-vl-3b", "a100-80", "0.9.2", "serve", {"gpu_memory_utilization": 0.3}).verdict == "no_kv_cache"


# --- the version audit's MISMATCH rows (docs/vllm-version-audit.md), in its ranked order ---------------------------

def test_audit_rank1_a6_v100_on_0_8_5_runs_v0_and_fails_in_the_profile_run():
    p = plan("minicpm-v-2_6", "v100-32", "0.8.5")
    assert (p.engine, p.family, p.verdict, p.failing_phase) == ("V0", "v0-merged", "oom_profile", "vision_encoder")
    assert (p.profile["encoder_items"], p.profile["encoder_slices"]) == (38, 494)  # audit: 38 items, 494 slices
    assert any("compute capability 7.0 < 8.0" in n for n in p.notes)
    forced = plan("minicpm-v-2_6", "v100-32", "0.8.5", overrides={"use_v1": True})
    assert (forced.engine, forced.verdict) == ("V1", "ok")  # what plan said before the fix
    assert plan("minicpm-v-2_6", "v100-32", "0.10.2").engine == "V1"  # the rule is gone in 0.10.2


@pytest.mark.parametrize("version", ["0.8.0", "0.8.1", "0.8.2"])
def test_audit_rank2_a7_minicpmv_is_v0_only_in_0_8_0_to_0_8_2(version):
    p = plan("minicpm-v-2_6", "3090", version)
    assert (p.engine, p.family) == ("V0", "v0-merged")
    assert any("V0-only" in n for n in p.notes)
    assert plan("minicpm-v-2_6", "3090", "0.8.3").engine == "V1"


@pytest.mark.parametrize("version", ["0.7.1", "0.7.3", "0.8.2"])
def test_audit_rank2_b5_minicpmv_on_v1_before_0_8_3_cannot_start_for_a_non_memory_reason(version):
    p = plan("minicpm-v-2_6", "3090", version, overrides={"use_v1": True})
    assert (p.verdict, p.failing_phase) == ("error", "startup_check")
    assert any("cannot run on the V1 engine" in n for n in p.notes)


def test_audit_rank3_b4_video_off_on_0_7_3_drops_the_dummy_images_and_starts():
    p = plan("minicpm-v-2_6", "3090", "0.7.3", overrides={"limit_mm_per_prompt": {"video": 0}})
    # the audit's own arithmetic with the encoder removed (37,984), less the 8 MiB rotary cache in the weights
    assert (p.verdict, p.kv_cache_tokens) == ("ok", 37_824)
    assert p.profile["encoder_items"] == 0 and any("audit b4" in n for n in p.notes)
    assert plan("minicpm-v-2_6", "3090", "0.7.3").verdict == "oom_profile"  # with video the items stay


def _llama_128k():
    from diagnostics.models import model_from_config

    return model_from_config(dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=4096,
                                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                  intermediate_size=14336, vocab_size=128256, max_position_embeddings=131072))


@pytest.mark.parametrize("version, mbt", [("0.5.5", 512), ("0.6.3", 512), ("0.7.3", 2048)])
def test_audit_rank4_a2_long_context_text_model_on_v0_gets_chunked_prefill(version, mbt):
    p = plan(_llama_128k(), "l40s", version)
    assert (p.verdict, p.settings["max_num_batched_tokens"]) == ("ok", mbt)
    assert p.kv_cache_tokens * p.model.kv_bytes_per_token() / 2**30 > 16  # > one 131,072-token request
    off = plan(_llama_128k(), "l40s", version, overrides={"enable_chunked_prefill": False})
    assert off.verdict == "kv_too_small"  # what plan said for the defaults before the fix


@pytest.mark.parametrize("version", ["0.8.5", "0.9.2", "0.11.0"])
def test_audit_rank5_a9_chunked_prefill_false_is_overridden_on_v1_before_0_12(version):
    serve = plan("minicpm-v-2_6", "3090", version, "serve", {"enable_chunked_prefill": False})
    assert (serve.verdict, serve.settings["max_num_batched_tokens"]) == ("ok", 2048)
    assert any("forces enable_chunked_prefill=true" in n for n in serve.notes)
    llm = plan("minicpm-v-2_6", "3090", version, "llm", {"enable_chunked_prefill": False})
    assert llm.settings["max_num_batched_tokens"] == 8192 and llm.verdict != "oom_profile"


def test_audit_rank6_b6_0_10_2_profiles_seven_videos_and_more_kv_than_eight():
    p, q = plan("minicpm-v-2_6", "3090", "0.10.2"), plan("minicpm-v-2_6", "3090", "0.13.0")
    assert (p.profile["encoder_items"], q.profile["encoder_items"]) == (7, 8)
    assert p.kv_cache_tokens > q.kv_cache_tokens


def test_audit_rank7_c3_v1_before_0_9_1_loses_the_cuda_context_from_kv():
    p = plan("minicpm-v-2_6", "3090", "0.8.5")
    assert (p.verdict, p.kv_cache_tokens) == ("no_kv_cache", 0)  # audit: "No available memory for the cache blocks"
    assert any("audit c3" in n for n in p.notes)
    later = plan("minicpm-v-2_6", "3090", "0.9.1")
    assert not any("audit c3" in n for n in later.notes)


def test_audit_c9_0_29_on_reserves_a_null_block_before_the_one_request_check():
    exact = {"max_model_len": 4096, "num_gpu_blocks_override": 256}  # 256 x 16 = 4096 tokens: one request, exactly
    assert plan("minicpm-v-2_6", "h100-80", "0.28.0", overrides=exact).verdict == "ok"
    # from 0.29 (kv_cache_utils.py 0.29.0:2316-2321; the audit had 0.33)
    for version in ("0.29.0", "0.32.0", "0.33.0"):
        assert plan("minicpm-v-2_6", "h100-80", version, overrides=exact).verdict == "kv_too_small"


def test_kv_cache_dtype_fp8_halves_kv_bytes_per_token():
    a = plan("minicpm-v-2_6", "a100-80", "0.20.0")
    b = plan("minicpm-v-2_6", "a100-80", "0.20.0", overrides={"kv_cache_dtype": "fp8"})
    assert abs(b.kv_cache_tokens - 2 * a.kv_cache_tokens) <= 32
    assert b.components["kv_cache"].value_gib == pytest.approx(a.components["kv_cache"].value_gib, abs=1e-6)


def test_cudagraph_estimate_switch_moves_graphs_out_of_the_kv_budget():
    on = plan("minicpm-v-2_6", "a100-80", "0.20.0")
    off = plan("minicpm-v-2_6", "a100-80", "0.20.0", overrides={"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": False})
    graphs = on.components["cuda_graph"].value_gib
    assert off.components["kv_cache"].value_gib == pytest.approx(on.components["kv_cache"].value_gib + graphs)
    late = plan("minicpm-v-2_6", "a100-80", "0.18.0", overrides={"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": True})
    assert "CUDA graphs" in late.components["kv_cache"].basis  # opt-in in 0.18-0.19


def test_max_model_len_auto_reports_the_length_vllm_would_choose():
    p = plan("minicpm-v-2_6", "3090", "0.20.0", "serve", {"max_model_len": "auto", "gpu_memory_utilization": 0.8})
    fixed = plan("minicpm-v-2_6", "3090", "0.20.0", "serve", {"gpu_memory_utilization": 0.8})
    assert fixed.verdict == "kv_too_small" and p.verdict == "ok"
    assert p.settings["max_model_len"] == fixed.kv_cache_tokens < 32768
    assert any(f"would choose max_model_len={fixed.kv_cache_tokens}" in n for n in p.notes)


def test_vllm_0_5_3_plans_text_models_and_refuses_minicpmv_as_every_family_is_refused():
    with pytest.raises(UsageError, match=r"needs vLLM >= 0\.5\.4: vLLM 0\.5\.3 has no model class"):
        plan("minicpm-v-2_6", "a100-80", "0.5.3")
    text = plan(_llama_128k(), "a100-80", "0.5.3", overrides={"max_model_len": 8192})
    assert text.verdict == "ok" and text.engine == "V0"


def test_known_limits_are_notes_where_they_apply():
    assert any("0.33 moves cuBLAS" in n for n in plan("minicpm-v-2_6", "h100-80", "0.33.0").notes)
    assert not any("0.33 moves cuBLAS" in n for n in plan("minicpm-v-2_6", "h100-80", "0.32.0").notes)


def test_0_34_extensible_kv_cache_follows_measure_kv_cache_bytes():
    """0.34 v1/worker/extensible_kv_cache.py:592-618: KV = min(util x total - non_kv_used, free - non_kv_used -
    margin) - peak, margin = max(1 GiB, 0.75 x peak), peak = activation + the graph estimate (flag on)."""
    p = plan("minicpm-v-2_6", "h100-80", "0.34.0")
    c = {k: t.value_gib for k, t in p.components.items()}
    peak = c["activation_peak"] + c["cuda_graph"]
    margin = max(1.0, 0.75 * peak)
    free = p.card.total_gib - p.cuda_context_gib
    want = min(p.card.total_gib, free - margin) - c["weights"] - c["non_torch"] - 2 * c["cuda_graph"] - \
        c["activation_peak"]
    assert c["kv_cache"] == pytest.approx(want, abs=1e-6)
    assert p.settings["block_size"] == 64 and p.kv_cache_tokens % 64 == 0
    assert any("extensible KV cache" in n for n in p.notes)
    off = plan("minicpm-v-2_6", "h100-80", "0.34.0", overrides={"enable_extensible_kv_cache": False})
    assert off.components["kv_cache"].value_gib == pytest.approx(
        0.92 * off.card.total_gib - sum(off.components[k].value_gib for k in
                                        ("weights", "non_torch", "activation_peak", "cuda_graph")), abs=1e-6)


def test_0_34_extensible_kv_cache_skips_the_free_memory_check():
    """util 1.0 would fail the free-memory check; 0.34 skips it with the extensible KV cache
    (v1/worker/utils.py:783-788), and keeps it when the cache is estimate-based."""
    assert plan("minicpm-v-2_6", "h100-80", "0.34.0").verdict != "insufficient_free_memory"
    assert plan("minicpm-v-2_6", "h100-80", "0.34.0", overrides={
        "enable_extensible_kv_cache": False, "gpu_memory_utilization": 1.0}).verdict == "insufficient_free_memory"


def test_graphs_outside_the_kv_budget_that_may_not_fit_are_named_a_risk():
    """vllm#16570 (V1 run, 0.8.4, 4x A100-40GB, TP 4, util 0.95): the start died in capture_model -> _dummy_run.
    0.8.4 captures up to batch 512 whatever max_num_seqs (2) is, outside the KV budget; under TP the graphs' high
    bound does not fit in the ~2.6 GiB left: plan names the risk (the value alone fits, so the verdict stays)."""
    settings = {"tensor_parallel_size": 4, "gpu_memory_utilization": 0.95, "max_num_seqs": 2, "max_model_len": 4096,
                "limit_mm_per_prompt": {"image": 1, "video": 0}, "mm_processor_kwargs": {"max_pixels": 1048576}}
    p = plan("qwen2.5-vl-72b", "a100-40", "0.8.4", "llm", settings)
    assert "batch 512" in p.components["cuda_graph"].basis
    assert any(n.startswith("risk: oom_cuda_graph") for n in p.notes), p.notes
    eager = plan("qwen2.5-vl-72b", "a100-40", "0.8.4", "llm", {**settings, "enforce_eager": True})
    assert not any("oom_cuda_graph" in n for n in eager.notes)
    budgeted = plan("qwen2.5-vl-7b", "a100-80", "0.32.0", "llm", {"max_model_len": 8192})  # 0.20+: in the budget
    assert not any("oom_cuda_graph" in n for n in budgeted.notes)


@pytest.mark.parametrize("version", ["0.5.5", "0.6.2", "0.6.3", "0.10.0", "0.32.0"])
def test_the_calibration_parts_say_eager_exactly_when_the_encoder_profile_does(version):
    """One decision: `_parts` (what calibrate fits on) re-derived "eager vision attention" and said eager for family
    VLMs below vLLM 0.6.3 while the encoder profile (the plan's own figure) said linear (code review: 1)."""
    from diagnostics.models import get_model, stored_models

    for name in ["minicpm-v-2_6", *stored_models()]:
        try:
            p = plan(get_model(name), get_card("h100-80"), version, "llm", {"max_model_len": 4096})
        except UsageError:  # a model this vLLM does not have
            continue
        enc = p.profile["parts"]["encoder_raw_bytes"]
        assert p.profile["parts"]["eager"] == (p.profile["eager_vision_attention"] and enc > 0), (name, version)
