"""Mistral-Small-3.1 (Mistral3ForConditionalGeneration) against vLLM 0.32's own figures
(tests/tools/vlm_vllm_check.py on the stored mistral-small-3.1-24b kit: tests/data/vllm-0.32-vlm-figures.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics import families
from diagnostics.errors import UsageError
from diagnostics.families import mistral3

ROOT = Path(__file__).resolve().parents[2]
NAME = "mistral-small-3.1-24b"
FIGURES = json.loads((ROOT / "tests" / "data" / "vllm-0.32-vlm-figures.json").read_text())["models"][NAME]
STORED = ROOT / "diagnostics" / "data" / "models" / NAME


def _parse():
    return mistral3.parse(json.loads((STORED / "config.json").read_text()),
                          json.loads((STORED / "preprocessor_config.json").read_text()), {}, str(STORED))


def test_params_equal_vllms_meta_model_of_the_real_checkpoint():
    """vLLM builds the LM head untied for a checkpoint that ships lm_head.weight (the meta run's hf_overrides)."""
    assert FIGURES["meta"]["settings"]["hf_overrides"] == {"tie_word_embeddings": False}
    assert _parse()[3] == FIGURES["meta"]["params"] == 24_011_361_280


def test_tower_and_projector_equal_vllms_by_prefix():
    cfg = json.loads((STORED / "config.json").read_text())
    by = FIGURES["meta"]["by_prefix"]
    assert mistral3.vision_params(cfg, cfg["vision_config"], 5120) == by["vision_tower"] + by["multi_modal_projector"]


@pytest.mark.parametrize("i", range(len(FIGURES["rows"])))
def test_tokens_per_image_equal_vllm_032_for_every_stored_row(i):
    row = FIGURES["rows"][i]
    shape = _parse()[2]
    got = mistral3.items(shape, row["settings"], 32768, {"image": 1}, families.parse_version("0.32.0"))
    assert {m: it.per_item for m, it in got.items()} == row["vllm"]["tokens_per_item"]


def test_before_0_29_the_dummy_image_is_the_towers_edge_whatever_the_processor_size():
    shape = _parse()[2]
    small = {"mm_processor_kwargs": {"size": {"longest_edge": 1024}}}
    old = mistral3.items(shape, small, 32768, {"image": 1}, families.parse_version("0.28.0"))["image"]
    new = mistral3.items(shape, small, 32768, {"image": 1}, families.parse_version("0.29.0"))["image"]
    assert (old.tokens, new.tokens) == (3025, 1369)
    assert new.patches == 1369 * 4  # 2 x 2 spatial merge: ViT patches per embedding


def test_the_version_window_starts_at_0_8_3():
    fam = families.parse(json.loads((STORED / "config.json").read_text()), {}, {}, NAME)[2]
    families.check_version(fam, "0.8.3", NAME)
    with pytest.raises(UsageError, match=r">= 0\.8\.3"):
        families.check_version(fam, "0.8.2", NAME)


def test_the_size_knob_is_nested_and_keeps_the_users_other_kwargs():
    shape = _parse()[2]
    knob = mistral3.knobs(shape)[0]
    settings = {"mm_processor_kwargs": {"size": {"shortest_edge": 10}, "do_resize": True}}
    assert knob.current(settings) == 1540
    value = knob.setting_value(settings, 784)
    assert value == {"size": {"shortest_edge": 10, "longest_edge": 784}, "do_resize": True}
    assert knob.steps(1540)[0] == 1232 and all(x % 28 == 0 for x in knob.steps(1540))


def test_hub_id_and_kit_point_the_image_token_at_img(tmp_path):
    from diagnostics.kit.vlm import build_vlm_kit
    from diagnostics.models import get_model

    assert get_model("mistralai/Mistral-Small-3.1-24B-Instruct-2503").name == NAME
    out = build_vlm_kit(NAME, tmp_path / "kit")
    config = json.loads((out / "config.json").read_text())
    vocab = json.loads((out / "tokenizer.json").read_text())["added_tokens"]
    assert config["image_token_index"] == next(t["id"] for t in vocab if t["content"] == "[IMG]")


def test_the_dense_block_mask_counts_only_in_0_12_to_0_28():
    """vLLM 0.12 - 0.28 ran the Pixtral HF tower without xformers: one L x L mask over the packed patches."""
    from diagnostics.models import get_model
    from diagnostics.predict.coefficients import DEFAULT
    from diagnostics.predict.mm_budget import MMProfile
    from diagnostics.predict.terms import encoder_bytes

    model = get_model(NAME)
    prof = MMProfile("image", 2, 2, 24200, 24200, 8192, 3025, 6050)
    got = {v: encoder_bytes(model, prof, 2, False, 1, DEFAULT, v) for v in ("0.11.0", "0.12.0", "0.28.0", "0.29.0")}
    assert got["0.11.0"] == got["0.29.0"] and got["0.29.0"]["scores"] == 0
    assert got["0.12.0"] == got["0.28.0"]
    assert got["0.28.0"]["total"] - got["0.29.0"]["total"] == got["0.28.0"]["scores"] == 24200 ** 2 * 2


def test_the_suites_worst_case_request_sends_the_dummy_sized_images():
    from diagnostics.cards import get_card
    from diagnostics.models import get_model
    from diagnostics.suite.worst_case import worst_case

    w = worst_case(get_model(NAME), get_card("h100-80"), "0.32.0", {"max_model_len": 32768})
    (images,) = w.items
    assert (images.width, images.height, images.tokens, images.basis) == (1540, 1540, 3025, "derived")
    small = worst_case(get_model(NAME), get_card("h100-80"), "0.32.0",
                       {"max_model_len": 32768, "mm_processor_kwargs": {"size": {"longest_edge": 784}}})
    assert (small.items[0].width, small.items[0].tokens) == (784, 784)


def test_a_flat_longest_edge_is_named_as_a_key_plan_does_not_read():
    from diagnostics.models import get_model
    from diagnostics.predict.limits import unread_mm_kwargs_notes

    notes = unread_mm_kwargs_notes(get_model(NAME), families.parse_version("0.32.0"),
                                   {"mm_processor_kwargs": {"size": {"longest_edge": 1024}, "longest_edge": 1024}})
    assert len(notes) == 1 and notes[0].startswith("mm_processor_kwargs longest_edge: not a key")


def test_0_8_3_budgets_the_break_tokens_too():
    """0.8.3's get_mm_max_tokens_per_item counted (ncols + 1) x nrows; 0.8.4 counts the 55 x 55 embeddings."""
    shape = _parse()[2]
    old = mistral3.items(shape, {}, 32768, {"image": 1}, families.parse_version("0.8.3"))["image"]
    new = mistral3.items(shape, {}, 32768, {"image": 1}, families.parse_version("0.8.4"))["image"]
    assert (old.per_item, old.tokens, new.per_item) == (56 * 55, 3025, 3025)


def test_the_suites_family_matrix_nests_the_longest_edge_axis():
    from diagnostics.models import get_model
    from diagnostics.suite.family_matrix import knob_axes

    axes = knob_axes(get_model(NAME).family.knobs)
    assert axes["mm_processor_kwargs"] == [{"size": {"longest_edge": 1540}}, {"size": {"longest_edge": 1024}}]
