"""Phi-4-multimodal (Phi4MMForCausalLM) against vLLM 0.32's own figures: the meta-device build
(tests/tools/vlm_vllm_check.py --meta) and Phi4MMProcessingInfo's token arithmetic (tests/tools/phi4mm_vllm_tokens.py),
both stored in tests/data/vllm-0.32-vlm-figures.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics import families
from diagnostics.errors import UsageError
from diagnostics.families import phi4mm
from diagnostics.versions import parse_version

ROOT = Path(__file__).resolve().parents[2]
NAME = "phi-4-multimodal"
FIGURES = json.loads((ROOT / "tests" / "data" / "vllm-0.32-vlm-figures.json").read_text())["models"][NAME]
STORED = ROOT / "diagnostics" / "data" / "models" / NAME
CONFIG = json.loads((STORED / "config.json").read_text())


def _shape():
    return phi4mm.parse(CONFIG, json.loads((STORED / "preprocessor_config.json").read_text()), {}, NAME)[2]


def test_params_equal_vllms_meta_model_and_each_tower():
    by = FIGURES["meta"]["by_prefix"]
    assert families.parse(CONFIG, {}, {}, NAME)[3] == FIGURES["meta"]["params"] == 4_713_508_032
    assert phi4mm.image_params(3072) == by["vision_encoder"]
    assert phi4mm.audio_params(CONFIG, 3072) == by["embed_tokens_extend"]


def test_the_conformer_count_follows_its_config():
    """A different block count or width changes the count as vLLM's classes would (24 -> 12 blocks halves the blocks'
    share only)."""
    c = CONFIG["audio_processor"]["config"]
    full, half = phi4mm.conformer_params(c), phi4mm.conformer_params({**c, "num_blocks": 12})
    assert full - half == 12 * (full - phi4mm.conformer_params({**c, "num_blocks": 23}))
    with pytest.raises(ValueError, match="nemo_conv"):
        phi4mm.conformer_params({**c, "input_layer": "conv2d"})


@pytest.mark.parametrize("hd", ["1", "4", "16", "36"])
def test_image_tokens_equal_vllms_compute_num_image_tokens(hd):
    shape = _shape()
    got = phi4mm.items(shape, {"mm_processor_kwargs": {"dynamic_hd": int(hd)}}, 131072, {"image": 1},
                       parse_version("0.32.0"))["image"]
    assert got.tokens == FIGURES["vllm_functions"]["image_tokens_by_dynamic_hd"][hd]
    assert got.slices == int(hd) + 1  # 1 x hd crops and the global view


def test_the_dummy_audio_is_188_tokens_as_vllm_computes():
    got = phi4mm.items(_shape(), {}, 131072, {"audio": 1}, parse_version("0.32.0"))["audio"]
    f = FIGURES["vllm_functions"]
    assert (got.tokens, phi4mm.audio_tokens(_shape())[1]) == (f["audio_tokens"], f["audio_frames"])


def test_before_0_8_5_dynamic_hd_is_16_and_one_modality_per_dummy_sequence():
    shape = _shape()
    kwargs = {"mm_processor_kwargs": {"dynamic_hd": 36}}
    old = phi4mm.items(shape, kwargs, 32768, {"image": 1, "audio": 1}, parse_version("0.8.4"))
    assert set(old) == {"image"} and old["image"].tokens == 4625  # the kwargs do not reach 0.8.4's dummy data
    many_audios = phi4mm.items(shape, {}, 32768, {"image": 1, "audio": 30}, parse_version("0.8.4"))
    assert set(many_audios) == {"audio"}  # 30 x 188 > 4625: dummy_data_for_phi4mm sends the audios
    new = phi4mm.items(shape, {}, 32768, {"image": 1, "audio": 1}, parse_version("0.8.5"))
    assert (new["image"].tokens, new["audio"].tokens) == (10065, 188)


def test_window_v0_only_until_0_8_5_and_refused_before_0_8_0():
    fam = families.parse(CONFIG, {}, {}, NAME)[2]
    families.check_version(fam, "0.8.0", NAME)
    assert str(fam.v0_only_until) == "0.8.5"
    with pytest.raises(UsageError, match=r">= 0\.8\.0"):
        families.check_version(fam, "0.7.3", NAME)


def test_plan_profiles_the_image_and_audio_alone_when_images_are_off():
    from diagnostics.predict.estimator import plan

    both = plan("microsoft/Phi-4-multimodal-instruct", "cpu", "0.32.0", "llm",
                {"max_model_len": 32768, "max_num_batched_tokens": 8192}).profile
    assert both["tokens_per_modality"] == {"audio": 188, "image": 10065} and both["modality"] == "image"
    audio = plan(NAME, "cpu", "0.32.0", "llm", {"max_model_len": 32768, "max_num_batched_tokens": 8192,
                                                 "limit_mm_per_prompt": {"image": 0}}).profile
    assert (audio["modality"], audio["encoder_budget_tokens"], audio["encoder_items"]) == ("audio", 8192, 43)


def test_meta_only_kit_carries_the_kits_config_class_and_no_processor(tmp_path):
    from diagnostics.kit.vlm import build_vlm_kit, kit_families

    assert NAME not in kit_families()  # no processor: not a budget kit
    with pytest.raises(UsageError, match="remote code"):
        build_vlm_kit(NAME, tmp_path / "full")
    out = build_vlm_kit(NAME, tmp_path / "meta", meta_only=True)
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_phi4mm.Phi4MMConfig"}
    assert (out / "configuration_phi4mm.py").is_file() and not (out / "image_processing_kit.py").exists()


def test_dynamic_hd_is_a_key_plan_reads_and_a_typo_is_named():
    from diagnostics.models import get_model
    from diagnostics.predict.limits import unread_mm_kwargs_notes

    model, v = get_model(NAME), parse_version("0.32.0")
    assert unread_mm_kwargs_notes(model, v, {"mm_processor_kwargs": {"dynamic_hd": 16}}) == []
    assert "dynamic_hdd" in unread_mm_kwargs_notes(model, v, {"mm_processor_kwargs": {"dynamic_hdd": 16}})[0]


def test_plan_names_the_lora_slots_it_does_not_count():
    from diagnostics.predict.estimator import plan

    notes = plan(NAME, "a100-80", "0.32.0", "llm", {"max_model_len": 8192}).notes
    (lora,) = [n for n in notes if "LoRA" in n]
    # 32 layers x 320 x (8192 + 6144 + 19456 + 11264) x 2 B = 0.86 GiB: the LLM's qkv, o, gate_up, down widths
    assert "about 0.86 GiB for 1 slot(s)" in lora and "not checked" in lora


def test_plan_fit_walks_dynamic_hd_from_0_8_5_with_vllms_token_line():
    from diagnostics.families import common
    from diagnostics.predict.mm_fit import find_knob

    knob = find_knob("dynamic_hd", NAME, "0.32.0")
    assert (knob.setting, knob.key, knob.lo) == ("mm_processor_kwargs", "dynamic_hd", 1)
    (size,) = phi4mm.size_knobs(_shape(), parse_version("0.32.0"))
    hd_tokens = FIGURES["vllm_functions"]["image_tokens_by_dynamic_hd"]
    assert all(size.fixed_tokens + int(n) * size.per_step_tokens == t for n, t in hd_tokens.items())
    assert isinstance(size, common.SizeKnob) and phi4mm.size_knobs(_shape(), parse_version("0.8.4")) == []
    with pytest.raises(UsageError, match="not a multimodal knob"):
        find_knob("dynamic_hd", NAME, "0.8.4")
