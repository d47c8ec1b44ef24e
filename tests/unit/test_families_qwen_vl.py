"""Qwen2-VL / Qwen2.5-VL / Qwen3-VL shapes against vLLM 0.32's own figures.

The reference numbers were printed by vLLM 0.32's own classes for the stored configs (tests/tools/vlm_vllm_check.py,
real-shape kit dirs, no weights): model built on the meta device, MultiModalBudget's max tokens per item.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.families import qwen_vl

MODELS = Path(__file__).resolve().parents[2] / "diagnostics" / "data" / "models"


def _parse(name):
    d = MODELS / name
    video = d / "video_preprocessor_config.json"
    return qwen_vl.parse(json.loads((d / "config.json").read_text()),
                         json.loads((d / "preprocessor_config.json").read_text()),
                         json.loads(video.read_text()) if video.is_file() else {}, str(d))


# name -> vLLM 0.32 meta-device parameters (visual, language_model)
VLLM_PARAMS = {
    "qwen2-vl-7b": (675_759_104, 7_615_616_512),
    "qwen2.5-vl-7b": (676_550_144, 7_615_616_512),
    "qwen3-vl-8b": (576_388_336, 8_190_735_360),
    "qwen3-vl-30b-a3b": (538_631_408, 30_532_122_624),
}


@pytest.mark.parametrize("name", list(VLLM_PARAMS))
def test_vision_and_total_params_equal_vllms_meta_model(name):
    text, vision, shape, params = _parse(name)
    visual, language = VLLM_PARAMS[name]
    assert qwen_vl.vision_params(shape.variant, vision) == visual
    assert params == visual + language


@pytest.mark.parametrize("name, image, video", [
    ("qwen2-vl-7b", 16384, 32768), ("qwen2.5-vl-7b", 16384, 32768), ("qwen3-vl-8b", 16384, 12288),
])
def test_max_tokens_per_item_at_32k(name, image, video):
    shape = _parse(name)[2]
    got = qwen_vl.items(shape, {}, 32768, {"image": 1, "video": 1})
    assert (got["image"].tokens, got["video"].tokens) == (image, video)
    assert got["image"].patches == 4 * image  # 2 x 2 patches merged into one token


def test_video_frames_follow_max_model_len_and_the_14_frame_cap():
    shape = _parse("qwen2.5-vl-7b")[2]
    assert qwen_vl.items(shape, {}, 32768, {"video": 1})["video"].slices == 4  # 4 frames = 2 x 16,384 tokens
    assert qwen_vl.items(shape, {}, 16384, {"video": 1})["video"].slices == 2
    small = {"mm_processor_kwargs": {"max_pixels": 1280 * 28 * 28}}
    video = qwen_vl.items(shape, small, 128000, {"video": 1})["video"]
    assert (video.slices, video.tokens) == (14, 7 * 1280)


def test_max_pixels_knob_and_nested_images_kwargs():
    shape = _parse("qwen2.5-vl-7b")[2]
    flat = qwen_vl.items(shape, {"mm_processor_kwargs": {"max_pixels": 1003520}}, 32768, {"image": 1})
    nested = qwen_vl.items(shape, {"mm_processor_kwargs": {"images_kwargs": {"max_pixels": 1003520}}}, 32768,
                           {"image": 1})
    assert flat["image"].tokens == nested["image"].tokens == 1280


def test_smart_resize_keeps_factor_multiples_within_max_pixels():
    h, w = qwen_vl.smart_resize(1000, 3000, 28, 3136, 1003520)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 1003520
    assert qwen_vl.smart_resize(10, 10, 28, 3136, 1003520) == (56, 56)  # grown to min_pixels


def test_qwen3_video_is_two_frames_at_the_video_processors_longest_edge():
    shape = _parse("qwen3-vl-8b")[2]
    assert shape.video_size == (4096, 25165824)
    video = qwen_vl.items(shape, {}, 262144, {"video": 1})["video"]
    assert (video.slices, video.tokens) == (2, 12288)
