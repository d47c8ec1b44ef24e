"""LLaVA-1.5 and LLaVA-OneVision against vLLM 0.32's own figures (tests/tools/vlm_vllm_check.py on the stored configs)."""

from __future__ import annotations

import json
from pathlib import Path

from diagnostics.families import llava

MODELS = Path(__file__).resolve().parents[2] / "diagnostics" / "data" / "models"


def _parse(name):
    d = MODELS / name
    return llava.parse(json.loads((d / "config.json").read_text()), {}, {}, str(d))


def test_llava_15_params_and_576_tokens_equal_vllms():
    _, _, shape, params = _parse("llava-1.5-7b")
    assert params == 7_050_828_800  # vLLM 0.32 meta device: 23 CLIP layers (feature layer -2), no post-norm
    assert llava.items(shape, {}, 4096, {"image": 1})["image"].tokens == 576


def test_onevision_params_equal_vllms_and_video_rule():
    _, _, shape, params = _parse("llava-onevision-7b")
    assert params == 8_030_805_280  # vLLM 0.32 meta device (image_newline, 26 SigLIP layers, no post-norm)
    video = llava.items(shape, {}, 32768, {"video": 1})["video"]
    assert (video.slices, video.tokens) == (16, 196 * 16 + 1)  # 27 x 27 patches pooled by 2 -> 14 x 14
    short = llava.items(shape, {}, 1000, {"video": 1})["video"]
    assert (short.slices, short.tokens) == (5, 196 * 5 + 1)


def test_best_resolution_prefers_the_grid_keeping_most_pixels():
    pins = [(384, 384), (384, 768), (768, 768)]
    assert llava.select_best_resolution(300, 700, pins) == (384, 768)


def test_a_llava_config_with_a_pixtral_tower_is_refused_not_read_as_llava_1_5():
    """mistral-community/pixtral-12b: vLLM's llava.py routes it to PixtralHFProcessingInfo (other rules)."""
    import pytest

    from diagnostics import families
    from diagnostics.errors import UsageError

    cfg = {"architectures": ["LlavaForConditionalGeneration"], "text_config": {"hidden_size": 5120},
           "vision_config": {"model_type": "pixtral", "hidden_size": 1024, "image_size": 1024, "patch_size": 16}}
    with pytest.raises(UsageError, match="Pixtral vision tower") as err:
        families.parse(cfg, {}, {}, "pixtral-12b/config.json")
    assert "\n" not in str(err.value)
