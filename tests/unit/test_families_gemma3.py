"""Gemma 3 against vLLM 0.32's own figures (tests/tools/vlm_vllm_check.py on the stored gemma-3-4b config)."""

from __future__ import annotations

import json
from pathlib import Path

from diagnostics.families import gemma3

MODELS = Path(__file__).resolve().parents[2] / "diagnostics" / "data" / "models"


def _parse(name):
    d = MODELS / name
    return gemma3.parse(json.loads((d / "config.json").read_text()),
                        json.loads((d / "preprocessor_config.json").read_text()), {}, str(d))


def test_gemma3_4b_params_equal_vllms_meta_model():
    assert _parse("gemma-3-4b")[3] == 4_300_079_472


def test_gemma3_27b_params_equal_the_published_total():
    assert _parse("gemma-3-27b")[3] == 27_432_406_640


def test_256_tokens_per_image_and_five_views_with_pan_and_scan():
    shape = _parse("gemma-3-4b")[2]
    assert gemma3.items(shape, {}, 32768, {"image": 1})["image"].tokens == 256
    pan = gemma3.items(shape, {"mm_processor_kwargs": {"do_pan_and_scan": True}}, 32768, {"image": 1})["image"]
    assert (pan.tokens, pan.slices) == (1280, 5)  # vLLM 0.32 printed 1280 tokens per item
    assert gemma3.items(shape, {}, 32768, {}) == {}
