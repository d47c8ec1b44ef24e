"""Llama-3.2-Vision: the published parameter total (vLLM 0.32 has no mllama module to check against)."""

from __future__ import annotations

import json
from pathlib import Path

from diagnostics.families import mllama

CONFIG = Path(__file__).resolve().parents[2] / "diagnostics" / "data" / "models" / "llama-3.2-11b-vision" / "config.json"


def test_params_equal_the_checkpoint_total_plus_vllms_vocab_padding():
    params = mllama.parse(json.loads(CONFIG.read_text()), {}, {}, str(CONFIG))[3]
    # 10,670,220,835 in the safetensors index; vLLM pads the 128,264 embedding rows to 128,320
    assert params == 10_670_220_835 + (128320 - 128264) * 4096


def test_dummy_image_is_four_tiles_of_1601_patches():
    shape = mllama.parse(json.loads(CONFIG.read_text()), {}, {}, str(CONFIG))[2]
    item = mllama.items(shape, {}, 4096, {"image": 1})["image"]
    assert (item.slices, item.tokens) == (4, 4 * 1601)
