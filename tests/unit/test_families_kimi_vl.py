"""Kimi-VL against vLLM's kimi_vl.py: the parameter count of vLLM 0.32's meta build and its budget rows
(tests/data/vllm-0.32-vlm-figures.json), vLLM's image-token formula over the stored preprocessor config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics import families
from diagnostics.errors import UsageError
from diagnostics.families import kimi_vl

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "diagnostics" / "data" / "models"
FIGURES = json.loads((ROOT / "tests" / "data" / "vllm-0.32-vlm-figures.json").read_text())["models"]


def _parse(pre=None):
    d = MODELS / "kimi-vl-a3b-instruct"
    return kimi_vl.parse(json.loads((d / "config.json").read_text()),
                         pre if pre is not None else json.loads((d / "preprocessor_config.json").read_text()), {},
                         str(d))


def test_params_equal_vllm_0_32_meta_build_per_part():
    meta = FIGURES["kimi-vl-a3b-instruct"]["meta"]
    assert _parse()[3] == meta["params"]
    assert set(meta["by_prefix"]) == {"vision_tower", "multi_modal_projector", "language_model"}


def test_the_dummy_image_is_1024_square_scaled_to_in_token_limit():
    shape = _parse()[2]
    # 73 x 73 = 5,329 patches > 4,096: scaled by sqrt(4096 / 5329) to 897 px, padded to 924 = 33 kernels of 28 px
    assert kimi_vl.image_tokens(shape, 1024, 1024) == 33 * 33
    assert kimi_vl.items(shape, {}, 32768, {"image": 1})["image"].tokens == 1089
    roomy = _parse({"in_token_limit": 16384, "patch_size": 14, "merge_kernel_size": [2, 2]})[2]
    assert kimi_vl.image_tokens(roomy, 1024, 1024) == 37 * 37  # unscaled: 1024 padded to 1036


def test_images_only_and_the_window_starts_at_0_8_5():
    fam = families.parse(json.loads((MODELS / "kimi-vl-a3b-instruct" / "config.json").read_text()), {}, {}, "k")[2]
    assert fam.modalities("0.32.0") == ("image",)
    families.check_version(fam, "0.8.5", "kimi")
    with pytest.raises(UsageError, match=r"needs vLLM >= 0\.8\.5"):
        families.check_version(fam, "0.8.4", "kimi")


def test_plan_profiles_the_dummy_image_on_vllm_0_32():
    from diagnostics.predict.estimator import plan

    prof = plan("moonshotai/Kimi-VL-A3B-Instruct", "cpu", "0.32.0", "llm",
                {"max_model_len": 32768, "max_num_batched_tokens": 8192}).profile
    assert prof["tokens_per_modality"] == {"image": 1089}
    assert (prof["encoder_budget_tokens"], prof["encoder_items"]) == (8192, 8192 // 1089)


def test_the_mla_llm_caches_one_latent_per_layer_and_the_weights_keep_the_tower():
    """vLLM 0.32 (diagnostics.vllm_exact on the stored config, a100-80, max_model_len 4096): 1,375,824 KV tokens,
    MLAAttentionSpec; before the MLA rules reached family models plan counted 16 K and V heads of 128 per layer
    (8,192 B per layer instead of 1,152) and planned 193,552 tokens."""
    from diagnostics.models import get_model
    from diagnostics.predict.estimator import plan
    from diagnostics.predict.terms import rope_cache_bytes

    model = get_model("kimi-vl-a3b-instruct")
    assert model.kv_bytes_per_token() == 27 * (512 + 64) * 2
    p = plan("kimi-vl-a3b-instruct", "a100-80", "0.32.0", "llm", {"max_model_len": 4096})
    # tower and projector too, and vLLM's rotary caches (MLA's 64-wide rope, predict.terms.rope_cache_bytes)
    assert p.components["weights"].value_gib * 2 ** 30 == pytest.approx(model.params * 2 + rope_cache_bytes(model, 2))
    assert abs(p.kv_cache_tokens - 1_375_824) <= 0.02 * 1_375_824


def test_before_0_14_moonvit_attends_over_the_packed_dummy_images():
    """vLLM 0.13 moonvit.py sdpa_attention: one dense mask over every image in the pass, 3-D q/k/v (the math path);
    0.14 MMEncoderAttention is varlen per image. 3 dummy images of 4,356 patches: 16 heads x 13,068^2 x 2 x 4 B."""
    from diagnostics.predict.estimator import plan

    settings = {"max_model_len": 32768, "max_num_batched_tokens": 4096}
    old = plan("kimi-vl-a3b-instruct", "h100-80", "0.13.0", "llm", settings)
    new = plan("kimi-vl-a3b-instruct", "h100-80", "0.14.0", "llm", settings)
    assert old.profile["vit_tokens"] == new.profile["vit_tokens"] == 3 * 4356
    n = 3 * 4356
    extra = (16 * n * n * 8 + n * n * 3) / 2 ** 30
    assert old.components["encoder_profile"].value_gib - new.components["encoder_profile"].value_gib == (
        pytest.approx(extra, rel=1e-6))
    assert kimi_vl.eager_attention("0.13.0", "v1") and not kimi_vl.eager_attention("0.14.0", "v1")
