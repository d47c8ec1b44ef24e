"""MiniCPM-V 2.6, 4.0 and 4.5 (families/minicpmv.py): the variant from config.json's version, parameters as vLLM
0.32 builds MiniCPMV2_6 / MiniCPMV4_0 / MiniCPMV4_5, the version window, and the dummy items (vLLM's MiniCPMVProcessingInfo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.errors import UsageError
from diagnostics.families import minicpmv
from diagnostics.models import MINICPM_V_2_6, get_model, model_from_config
from diagnostics.predict.estimator import plan
from diagnostics.versions import parse_version

MODELS = Path(__file__).resolve().parents[2] / "diagnostics" / "data" / "models"
STORED = MODELS / "minicpm-v-4_5" / "config.json"
FIGURES = Path(__file__).resolve().parents[2] / "tests" / "data" / "vllm-0.32-vlm-figures.json"
CHECKPOINT_BYTES = 17_391_790_560  # openbmb/MiniCPM-V-4_5 model.safetensors.index.json total_size (bf16)


def test_the_variant_is_config_versions():
    assert get_model("minicpm-v-4_5").family.variant == "minicpm-v-4_5"
    assert MINICPM_V_2_6.family.variant == "minicpm-v-2_6"
    cfg = json.loads(STORED.read_text())
    del cfg["version"]  # vLLM reads 2.0 / 2.5 then: no rules here
    with pytest.raises(UsageError, match="version none .*accepted: versions 2.6, 4.0, 4.5 .*openbmb/MiniCPM-V-4,"):
        model_from_config(cfg)


def test_4_5_parameters_are_the_checkpoints_plus_vllms_vocab_padding():
    m = get_model("minicpm-v-4_5")
    padding = (151808 - 151748) * 4096 * 2  # embed_tokens and the untied lm_head padded to a multiple of 64
    assert m.params == CHECKPOINT_BYTES // 2 + padding == 8_696_386_800
    # a Qwen3 LLM: without q/k/v biases, with q_norm / k_norm; as 2.6's Qwen2 rule it would differ
    qwen2_rule = dict(json.loads(STORED.read_text()), version=2.6)
    assert model_from_config(qwen2_rule).params - m.params == 36 * ((4096 + 2 * 1024) - 2 * 128)


def test_4_5_is_refused_before_0_10_2_and_planned_from_it():
    with pytest.raises(UsageError, match=r"needs vLLM >= 0\.10\.2: vLLM 0\.10\.1 has no model class"):
        plan("minicpm-v-4_5", "h100-80", "0.10.1")
    with pytest.raises(UsageError, match="has no model class"):
        plan("openbmb/MiniCPM-V-4_5", "a100-80", "0.6.3")  # the hub id answers too
    p = plan("minicpm-v-4_5", "h100-80", "0.32.0", overrides={"max_model_len": 32768,
                                                               "max_num_batched_tokens": 8192})
    assert p.profile["tokens_per_modality"] == {"image": 640, "video": 1024}
    rope = 40_960 * 128 * 2  # Qwen3's rotary cache: max_position_embeddings x head_dim in bf16
    assert p.components["weights"].value_gib == pytest.approx((8_696_386_800 * 2 + rope) / 2**30)


def test_4_5_dummy_items_follow_the_version_rules_with_its_own_numbers():
    s = get_model("minicpm-v-4_5").family.shape
    assert minicpmv.image_item(s, {}, parse_version("0.10.2")).tokens == 671  # 0.10.1-0.12.x count separators
    assert minicpmv.image_item(s, {}, parse_version("0.32.0")).tokens == 640  # (9 + 1) x 64
    assert minicpmv.video_item(s, {}, parse_version("0.32.0"), 1, 1, 32768).slices == 16


def test_knobs_are_data_and_max_slice_nums_changes_tokens_per_image():
    fam = MINICPM_V_2_6.family
    slices = next(k for k in fam.knobs if k.key == "max_slice_nums")
    assert slices.steps(9) == [8, 4, 2, 1] and not slices.advise
    assert fam.tokens_per_item(slices, 4, {"max_model_len": 32768}, "0.32.0") == 320


def test_4_0_parameters_equal_vllms_minicpmv4_0_on_the_meta_device():
    meta = json.loads(FIGURES.read_text())["models"]["minicpm-v-4"]["meta"]
    m = get_model("openbmb/MiniCPM-V-4")  # the hub id answers
    assert m.name == "minicpm-v-4" and m.family.variant == "minicpm-v-4"
    assert meta["model_class"] == "MiniCPMV4_0" and m.params == meta["params"] == 4_059_655_920
    # LlamaForCausalLM: no q/k/v biases; head_dim 128 from config.json (32 x 128 = 4096 != hidden 2560)
    cfg = json.loads((MODELS / "minicpm-v-4" / "config.json").read_text())
    assert model_from_config(dict(cfg, version=2.6)).params - m.params == 32 * (4096 + 2 * 256)
    assert model_from_config({k: v for k, v in cfg.items() if k != "head_dim"}).params < m.params


def test_4_0_is_refused_before_0_10_1_and_counts_its_items_as_2_6_does():
    with pytest.raises(UsageError, match=r"minicpm-v-4 needs vLLM >= 0\.10\.1: vLLM 0\.10\.0 has no model class"):
        plan("minicpm-v-4", "h100-80", "0.10.0")
    s4, s26 = get_model("minicpm-v-4").family.shape, MINICPM_V_2_6.family.shape
    for v in ("0.10.1", "0.11.0", "0.32.0"):
        pv = parse_version(v)
        assert minicpmv.image_item(s4, {}, pv) == minicpmv.image_item(s26, {}, pv)
        assert minicpmv.video_item(s4, {}, pv, 1, 1, 32768) == minicpmv.video_item(s26, {}, pv, 1, 1, 32768)


def test_4_5_packs_no_video_frames_as_vllm_sends_no_temporal_ids():
    """vLLM keeps only pixel_values / image_sizes / tgt_sizes from a video's frames (0.32 minicpmv.py:937-967), so
    Resampler4_5's 3D packing never runs: 16 frames x 64 tokens, as vLLM 0.32 printed (figures JSON)."""
    rows = json.loads(FIGURES.read_text())["models"]["minicpm-v-4_5"]["rows"]
    printed = next(r["vllm"]["tokens_per_item"]["video"] for r in rows if "video" in r["vllm"]["tokens_per_item"])
    v = minicpmv.video_item(get_model("minicpm-v-4_5").family.shape, {}, parse_version("0.32.0"), 1, 1, 32768)
    assert (v.slices, v.tokens) == (16, 16 * 64) and v.tokens == printed
