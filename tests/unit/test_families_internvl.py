"""InternVL3 (HF format) against vLLM 0.32's own figures (tests/tools/vlm_vllm_check.py, stored internvl3-8b)."""

from __future__ import annotations

import json
from pathlib import Path

from diagnostics.families import internvl

MODELS = Path(__file__).resolve().parents[2] / "diagnostics" / "data" / "models"


def _parse():
    d = MODELS / "internvl3-8b"
    return internvl.parse(json.loads((d / "config.json").read_text()),
                          json.loads((d / "preprocessor_config.json").read_text()), {}, str(d))


def test_params_tower_projector_and_untied_qwen2():
    # vLLM 0.32 meta device: vision_tower 304,012,288 + projector 27,540,480 + Qwen2-7B with its own lm_head
    assert _parse()[3] == 304_012_288 + 27_540_480 + 7_069_242_880 + 151680 * 3584


def test_one_tile_without_crop_to_patches_and_thirteen_with_it():
    shape = _parse()[2]
    assert internvl.items(shape, {}, 32768, {"image": 1})["image"].tokens == 256  # vLLM 0.32 printed 256
    crop = internvl.items(shape, {"mm_processor_kwargs": {"crop_to_patches": True}}, 32768, {"image": 1})["image"]
    assert (crop.slices, crop.tokens) == (13, 13 * 256)
    six = internvl.items(shape, {"mm_processor_kwargs": {"crop_to_patches": True, "max_patches": 6}}, 32768,
                         {"image": 1})["image"]
    assert six.tokens == 7 * 256


def test_video_frames_fill_what_the_image_leaves():
    shape = _parse()[2]
    video = internvl.items(shape, {}, 4096, {"image": 1, "video": 1})["video"]
    assert video.tokens == (4096 - 256) // 256 * 256


def test_internvl3_5_counts_qwen3_q_k_norms_as_vllm_0_32_built_it():
    """InternVL3.5 in HF format: the same InternS1ForConditionalGeneration with a Qwen3 LLM (q/k RMSNorms, no q/k/v
    biases). vLLM 0.32 on the meta device (tests/data/vllm-0.32-vlm-figures.json): vision_tower 304,012,288 +
    multi_modal_projector 33,570,816 + language_model 8,190,735,360 = 8,528,318,464."""
    d = MODELS / "internvl3_5-8b"
    params = internvl.parse(json.loads((d / "config.json").read_text()),
                            json.loads((d / "preprocessor_config.json").read_text()), {}, str(d))[3]
    figures = json.loads((MODELS.parents[2] / "tests" / "data" / "vllm-0.32-vlm-figures.json").read_text())
    meta = figures["models"]["internvl3_5-8b"]["meta"]
    assert params == meta["params"] == 304_012_288 + 33_570_816 + 8_190_735_360
    assert meta["by_prefix"]["language_model"] == 8_190_735_360  # Qwen3-8B's published total
