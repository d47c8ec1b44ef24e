"""GLM-4.1V / 4.5V against vLLM's glm4_1v.py: vLLM 0.32's own figures (tests/tools/vlm_vllm_check.py on the stored
glm-4.1v-9b-thinking, tests/data/vllm-0.32-vlm-figures.json) and the dummy-item rules of older releases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics import families
from diagnostics.errors import UsageError
from diagnostics.families import glm4v

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "diagnostics" / "data" / "models"
FIGURES = json.loads((ROOT / "tests" / "data" / "vllm-0.32-vlm-figures.json").read_text())["models"]


def _parse(cfg=None):
    d = MODELS / "glm-4.1v-9b-thinking"
    return glm4v.parse(cfg or json.loads((d / "config.json").read_text()),
                       json.loads((d / "preprocessor_config.json").read_text()),
                       json.loads((d / "video_preprocessor_config.json").read_text()), str(d))


def _image(settings, version, seq_len=65536):
    return glm4v.items(_parse()[2], settings, seq_len, {"image": 1}, version)["image"].tokens


def test_params_equal_vllm_0_32_meta_build_per_part():
    cfg = json.loads((MODELS / "glm-4.1v-9b-thinking" / "config.json").read_text())
    _, spec, _, params = _parse()
    meta = FIGURES["glm-4.1v-9b-thinking"]["meta"]
    assert params == meta["params"]
    visual = glm4v.vision_params(cfg["vision_config"])
    assert visual == meta["by_prefix"]["visual"] == 892_498_432
    assert params - visual == meta["by_prefix"]["language_model"]  # 4 norms per layer, q/k/v biases
    assert (spec.hidden, spec.mlp) == (1536, 4096)  # the blocks' MLP is out_hidden_size wide, not the merger's 13696


def test_the_flat_config_layout_counts_the_same():
    """Checkpoints saved before transformers 4.57 keep the text fields at the top level."""
    cfg = json.loads((MODELS / "glm-4.1v-9b-thinking" / "config.json").read_text())
    flat = {**{k: v for k, v in cfg.items() if k != "text_config"}, **cfg["text_config"]}
    assert _parse(flat)[3] == _parse()[3]


def test_image_tokens_follow_each_vllm_0_32_row():
    for row in FIGURES["glm-4.1v-9b-thinking"]["rows"]:
        seq = row["vllm"]["max_model_len"]
        assert _image(row["settings"], "0.32.0", seq) == row["vllm"]["tokens_per_item"]["image"], row["settings"]


def test_before_0_17_the_dummy_image_is_a_16_frame_square_whatever_max_pixels_says():
    shape = _parse()[2]
    assert glm4v.dummy_image(shape, {}, glm4v.Version(0, 16, 0)) == (1708, 1708)
    assert glm4v.dummy_image(shape, {}, glm4v.Version(0, 17, 0)) == (4844, 4844)
    assert _image({}, "0.16.0") == 3721 and _image({}, "0.17.0") == 29929
    small = {"mm_processor_kwargs": {"max_pixels": 3211264}}
    assert _image(small, "0.16.0") == 3721  # vLLM before 0.17 reads no max_pixels, transformers ignores it
    assert _image(small, "0.17.0") == 2025
    edge = {"mm_processor_kwargs": {"size": {"shortest_edge": 12544, "longest_edge": 1605632}}}
    assert _image(edge, "0.16.0") == _image(edge, "0.32.0") == 1024  # the HF processor's own size applies always


def test_video_frames_per_release():
    shape = _parse()[2]
    both = {"image": 1, "video": 1}
    old = glm4v.items(shape, {}, 65536, both, "0.16.0")["video"]
    assert (old.slices, old.tokens) == (600, 30000)  # the first-overflow loop never overflows: 600 frames
    mid = glm4v.items(shape, {}, 65536, both, "0.25.0")["video"]
    assert (mid.slices, mid.tokens) == (2, 29929)  # 3 frames of 4844 px already overflow 65536 - 29929
    new = glm4v.items(shape, {}, 65536, both, "0.32.0")["video"]
    assert (new.slices, new.tokens) == (7, 33856)  # the frame count with the most tokens that fit
    assert new.tokens <= 65536 - 29929


def test_the_two_frame_floor_starts_in_0_13():
    shape = _parse()[2]
    tight = {"mm_processor_kwargs": {"size": {"shortest_edge": 12544, "longest_edge": 1605632}}}
    assert glm4v.items(shape, tight, 2048, {"image": 1, "video": 1}, "0.12.0")["video"].slices == 1
    assert glm4v.items(shape, tight, 2048, {"image": 1, "video": 1}, "0.13.0")["video"].slices == 2


def test_window_refuses_releases_without_the_class():
    fam = families.parse(json.loads((MODELS / "glm-4.1v-9b-thinking" / "config.json").read_text()), {}, {}, "g")[2]
    families.check_version(fam, "0.9.2", "glm")
    with pytest.raises(UsageError, match=r"needs vLLM >= 0\.9\.2"):
        families.check_version(fam, "0.9.0", "glm")
    moe = families.Family("glm4.5v", glm4v, None)
    with pytest.raises(UsageError, match=r"needs vLLM >= 0\.10\.1"):
        families.check_version(moe, "0.10.0", "glm-4.5v")


def test_max_pixels_knob_steps_in_tokens_per_image():
    fam = families.parse(json.loads((MODELS / "glm-4.1v-9b-thinking" / "config.json").read_text()),
                         json.loads((MODELS / "glm-4.1v-9b-thinking" / "preprocessor_config.json").read_text()),
                         {}, "g")[2]
    pixels = next(k for k in fam.knobs if k.key == "max_pixels")
    assert pixels.default == 47040000
    assert fam.tokens_per_item(pixels, 2048 * 2 * 28 * 28, {"max_model_len": 65536}, "0.32.0") == 2025


def test_glm_4_5v_moe_decoder_equals_vllm_0_32_meta_build():
    """Glm4MoeForCausalLM: one dense layer, then 128 routed experts + 1 shared, the router and its score-correction
    bias; q/k/v biases (vLLM 0.32 glm4_moe.py)."""
    d = MODELS / "glm-4.5v"
    cfg = json.loads((d / "config.json").read_text())
    params = glm4v.parse(cfg, json.loads((d / "preprocessor_config.json").read_text()), {}, str(d))[3]
    meta = FIGURES["glm-4.5v"]["meta"]
    assert params == meta["params"] == 107_744_749_696
    assert params - glm4v.vision_params(cfg["vision_config"]) == meta["by_prefix"]["language_model"]


def test_max_pixels_and_size_are_keys_plan_reads_and_a_typo_is_noted():
    from diagnostics.models import get_model
    from diagnostics.predict.limits import unread_mm_kwargs_notes

    model, v = get_model("glm-4.1v-9b-thinking"), glm4v.Version(0, 32, 0)
    assert unread_mm_kwargs_notes(model, v, {"mm_processor_kwargs": {"max_pixels": 1, "size": {}}}) == []
    (note,) = unread_mm_kwargs_notes(model, v, {"mm_processor_kwargs": {"max_pixel": 1}})
    assert "max_pixel:" in note and "max_pixels, size" in note


def test_fit_walks_max_pixels_from_0_17_in_steps_of_one_image_token():
    from diagnostics.predict.mm_fit import find_knob

    fam = families.parse(json.loads((MODELS / "glm-4.1v-9b-thinking" / "config.json").read_text()),
                         json.loads((MODELS / "glm-4.1v-9b-thinking" / "preprocessor_config.json").read_text()),
                         {}, "g")[2]
    assert fam.size_knobs("0.16.0", ("image",)) == []  # vLLM's dummy image ignores max_pixels before 0.17
    (k,) = fam.size_knobs("0.32.0", ("image",))
    assert (k.name, k.step, k.lo) == ("max_pixels", 2 * 28 * 28, 8)  # 12,544 px shortest_edge = 8 tokens
    assert fam.items({"mm_processor_kwargs": {"max_pixels": 2025 * k.step}}, 65536, {"image": 1},
                     "0.32.0")["image"].tokens == 2025
    knob = find_knob("max_pixels", "glm-4.1v-9b-thinking", "0.32.0", {"max_model_len": 32768})
    assert knob.label(2048 * k.step) == "3,211,264 (2048 x 2 x 28 x 28 px: at most 2,048 tokens per image)"
