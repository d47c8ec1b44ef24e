"""The family registry: architecture lookup, version windows, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics import families
from diagnostics.errors import UsageError

MODELS = Path(__file__).resolve().parents[2] / "diagnostics" / "data" / "models"


def _family(name):
    cfg = json.loads((MODELS / name / "config.json").read_text())
    return families.parse(cfg, {}, {}, name)[2]


def test_every_stored_config_resolves_to_a_family():
    for d in sorted(MODELS.iterdir()):
        if (d / "config.json").is_file():
            assert families.lookup(json.loads((d / "config.json").read_text())) is not None, d.name


def test_unknown_architecture_is_not_a_family():
    assert families.lookup({"architectures": ["KimiVLForConditionalGeneration"]}) is None


def test_mllama_is_refused_from_0_11_with_the_last_release_named():
    fam = _family("llama-3.2-11b-vision")
    families.check_version(fam, "0.10.2", "llama")
    with pytest.raises(UsageError, match=r"removed in 0\.11\.0.*0\.10\.2 or earlier"):
        families.check_version(fam, "0.32.0", "llama")


def test_qwen3_vl_needs_0_11():
    with pytest.raises(UsageError, match=r">= 0\.11\.0"):
        families.check_version(_family("qwen3-vl-8b"), "0.9.2", "qwen3")


def test_a_config_missing_a_field_is_one_line():
    cfg = json.loads((MODELS / "gemma-3-4b" / "config.json").read_text())
    del cfg["vision_config"]["patch_size"]
    with pytest.raises(UsageError, match="cannot read a gemma3 config") as err:
        families.parse(cfg, {}, {}, "x/config.json")
    assert "\n" not in str(err.value)


def test_each_family_names_its_own_knob():
    assert "max_pixels" in _family("qwen2.5-vl-7b").knob
    assert "max_patches" in _family("internvl3-8b").knob
    assert "max_num_seqs" in _family("llama-3.2-11b-vision").knob


# --- the one interface: every family module has every piece, and the check can fail ---

def test_every_family_module_has_every_piece_and_a_missing_one_fails_the_check():
    families.check()  # what the package does at import
    import types

    from diagnostics.families import gemma3

    lacking = types.ModuleType("diagnostics.families.fake")
    for name in ("ARCHITECTURES", "VARIANTS", "parse", "items"):  # no knobs
        setattr(lacking, name, getattr(gemma3, name))
    with pytest.raises(RuntimeError, match="fake lacks knobs"):
        families.check([lacking])
    no_variant = types.ModuleType("diagnostics.families.fake2")
    for name in families.REQUIRED:
        setattr(no_variant, name, getattr(gemma3, name))
    no_variant.ARCHITECTURES = {"FakeForConditionalGeneration": "fake"}
    with pytest.raises(RuntimeError, match=r"lacks VARIANTS\['fake'\]"):
        families.check([no_variant])


def test_every_variant_has_a_window_a_kit_and_knobs_vllm_knows():
    from diagnostics.settings import KNOWN_SETTINGS
    from diagnostics.versions import read_version

    seen = 0
    for d in sorted(MODELS.iterdir()):
        if not (d / "config.json").is_file():
            continue
        fam = _family(d.name)
        w = fam.info.window
        assert read_version(w.since) and (w.until is None) == (w.last is None), d.name
        assert fam.kit.prompt and (fam.kit.tokens or fam.kit.no_kit), d.name
        assert fam.knobs and all(k.setting in KNOWN_SETTINGS for k in fam.knobs), d.name
        assert set(fam.info.modalities) <= {"image", "video", "audio"} and fam.info.modalities, d.name
        seen += 1
    assert seen >= 15


def test_every_stored_model_answers_to_its_hub_id_and_sources_names_it():
    from diagnostics.models import get_model, hub_id, stored_models

    sources = (MODELS / "SOURCES.md").read_text()
    hubs = families.stored_hub_ids()
    assert set(hubs) == set(stored_models())  # every stored config has exactly one hub id in its family's data
    for name in stored_models():
        hub = hub_id(name)
        assert f"| {name} | {hub} |" in sources, name
        assert get_model(hub).params == get_model(name).params and get_model(hub).name == name
        assert get_model(hub.lower()).name == name  # hub ids are case-insensitive, as the hub is


def test_a_knob_says_how_it_changes_tokens_per_item():
    fam = _family("qwen2.5-vl-7b")
    pixels = next(k for k in fam.knobs if k.key == "max_pixels")
    settings = {"max_model_len": 32768}
    assert pixels.default == 1003520  # the stored preprocessor_config.json's max_pixels
    assert fam.tokens_per_item(pixels, pixels.default, settings, "0.32.0") == 1280
    assert fam.tokens_per_item(pixels, 256 * 28 * 28, settings, "0.32.0") == 256
    assert pixels.steps(1280 * 28 * 28) == [1024 * 784, 512 * 784, 256 * 784]
    video = next(k for k in fam.knobs if k.setting == "limit_mm_per_prompt")
    assert fam.tokens_per_item(video, 0, settings, "0.32.0") is None  # it changes counts, not tokens


def test_a_model_class_this_vllm_lacks_is_refused_alike_for_every_family():
    minicpm = families.parse(json.loads((MODELS / "minicpm-v-4_5" / "config.json").read_text()), {}, {}, "m")[2]
    for fam, version in ((minicpm, "0.10.1"), (_family("qwen3-vl-8b"), "0.10.2")):
        with pytest.raises(UsageError, match="has no model class for it"):
            families.check_version(fam, version, "x")


def test_every_variants_kit_names_the_placeholders_of_its_modalities():
    """The worst-case request (suite/worst_case.py) repeats each item's placeholder from the family's kit: a table
    keyed by a "qwen" prefix held them before; now a variant without its placeholder fails here."""
    for module in families.MODULES:
        for name, variant in module.VARIANTS.items():
            image, video = variant.kit.placeholders
            assert image and image in variant.kit.prompt, (module.__name__, name)
            assert (video is not None) == ("video" in variant.modalities), (module.__name__, name)


def test_every_stored_model_has_a_worst_case_request_the_suite_can_send():
    """suite/worst_case.py asks each family for its largest item's size (a module's own geometry(), else its table):
    a family neither answers fails here, not as an AttributeError in a GPU run."""
    from diagnostics.cards import get_card
    from diagnostics.models import get_model, stored_models
    from diagnostics.suite.worst_case import worst_case

    for name in stored_models():
        model = get_model(name)
        if model.family.refusal("0.32.0", name):
            continue
        w = worst_case(model, get_card("h100-80"), "0.32.0", {"max_model_len": 8192})
        assert all(i.width > 0 and i.height > 0 for i in w.items), name  # items that fit 8192 tokens


def test_a_family_is_found_by_its_module_alone():
    """No list to edit: every module of diagnostics/families with ARCHITECTURES is a family (minicpmv first)."""
    from pathlib import Path

    names = {p.stem for p in Path(families.__file__).parent.glob("*.py")}
    found = [m.__name__.rsplit(".", 1)[1] for m in families.MODULES]
    assert found[0] == "minicpmv" and set(found) == names - {"__init__", "common", "minicpmv_slicing"}
    assert families.BY_ARCHITECTURE["Mistral3ForConditionalGeneration"][1] == "mistral3"
