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
    assert families.lookup({"architectures": ["Step3VLForConditionalGeneration"]}) is None


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


def test_family_modules_are_found_without_a_list_and_two_claiming_one_architecture_fail():
    from diagnostics.families import glm4v, qwen_vl

    assert families.MODULES[0].__name__.endswith("minicpmv") and glm4v in families.MODULES
    assert families.BY_ARCHITECTURE["Glm4vForConditionalGeneration"] == (glm4v, "glm4.1v")
    import types

    twin = types.ModuleType("diagnostics.families.twin")
    for name in families.REQUIRED:
        setattr(twin, name, getattr(qwen_vl, name))
    with pytest.raises(RuntimeError, match="qwen_vl and diagnostics.families.twin both claim"):
        families.check([qwen_vl, twin])


@pytest.mark.parametrize("piece", ["size_knobs", "geometry"])
def test_a_family_module_without_its_size_knobs_or_geometry_fails_the_check(piece):
    """plan --fit's item-size knobs and the worst-case request's item geometry are asked of the family module (they
    were branches on the variant in predict/mm_fit.py and suite/worst_case.py): a module lacking one fails here."""
    import types

    from diagnostics.families import gemma3

    assert piece in families.REQUIRED
    lacking = types.ModuleType("diagnostics.families.fake")
    for name in families.REQUIRED:
        if name != piece:
            setattr(lacking, name, getattr(gemma3, name))
    with pytest.raises(RuntimeError, match=f"fake lacks {piece}"):
        families.check([lacking])


def _all_families():
    from diagnostics.models import get_model, stored_models

    return [(name, get_model(name).family) for name in ("minicpm-v-2_6", *stored_models())]


def test_every_familys_size_knobs_are_fit_knobs_with_a_domain_label_and_frontier():
    from diagnostics.families.common import SizeKnob
    from diagnostics.predict.mm_fit import KNOB_NAMES

    seen = set()
    for name, fam in _all_families():
        for k in fam.size_knobs("0.32.0", fam.modalities("0.32.0")):
            assert isinstance(k, SizeKnob), name
            assert k.name in KNOB_NAMES and k.setting in ("mm_processor_kwargs", "limit_mm_per_prompt"), name
            assert k.frontier and (k.word or k.name == "max_pixels"), name
            hi, why = k.top(32768)
            assert hi >= k.lo * k.step and why, name
            seen.add(k.name)
    assert seen >= {"max_pixels", "max_slice_nums", "num_frames", "max_patches", "pan_and_scan_max_num_crops"}


def test_a_size_knobs_top_is_what_max_model_len_lets_one_item_carry_or_its_cap():
    fam = _family("minicpm-v-4_5")
    slices = next(k for k in fam.size_knobs("0.32.0", ("image",)) if k.name == "max_slice_nums")
    assert slices.top(32768) == (9, slices.cap_reason)  # 10 x 64 tokens fit: the checkpoint's max_slice_num caps
    assert slices.top(320)[0] == 4 and "max_model_len (320)" in slices.top(320)[1]  # (4 + 1) x 64 = 320
    assert [k.name for k in fam.size_knobs("0.8.3", ("image", "video"))] == []  # mm_processor_kwargs from 0.8.4
    qwen = next(iter(_family("qwen2.5-vl-7b").size_knobs("0.32.0", ("image",))))
    assert qwen.step == 28 * 28 and qwen.top(8192) == (8192 * 784, qwen.top(8192)[1])


def test_every_familys_largest_item_has_a_geometry_with_its_basis():
    for name, fam in _all_families():
        for modality in set(fam.info.modalities) & {"image", "video"}:  # an audio (MiniCPM-o) has no pixel size
            g = fam.geometry({}, modality, "0.32.0")
            assert g.width > 0 and g.height > 0, (name, modality)
            assert g.basis in ("derived", "estimate") and (g.note is None) == (g.basis == "derived"), name
    qwen = _family("qwen2.5-vl-7b")
    g = qwen.geometry({"mm_processor_kwargs": {"max_pixels": 1280 * 784}}, "image", "0.32.0")
    assert g.width * g.height <= 1280 * 784 and g.width % 28 == 0 and g.height % 28 == 0
    minicpm = _family("minicpm-v-4_5")
    assert (minicpm.geometry({"mm_processor_kwargs": {"max_slice_nums": 3}}, "image", "0.32.0").height ==
            448 * 3)
    assert minicpm.geometry({"mm_processor_kwargs": {"max_slice_nums": 3}}, "image", "0.8.3").height == 448 * 9


def test_every_variant_has_a_window_a_kit_and_knobs_vllm_knows():
    from diagnostics.setting_values import MODALITIES
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
        assert set(fam.info.modalities) <= set(MODALITIES) and fam.info.modalities, d.name
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
            audio = variant.kit.audio_placeholder
            assert (audio is not None) == ("audio" in variant.modalities), (module.__name__, name)


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


def test_a_family_counts_its_vision_tower_exactly_only_where_its_module_says_how():
    """predict.terms asks Family.vision_tower_params (it tested `family.module is minicpmv` before): MiniCPM-V's
    SigLIP + resampler as vLLM builds them; None for a module without the optional piece (terms then estimates)."""
    from diagnostics.families.minicpmv import resampler_params, tower_params
    from diagnostics.models import get_model

    m = get_model("minicpm-v-4_5")
    assert m.family.vision_tower_params(m) == tower_params(m.vision) + resampler_params(m.vision, m.hidden)
    q = get_model("qwen2.5-vl-7b")
    assert q.family.vision_tower_params(q) is None


def test_an_encoder_bytes_that_takes_no_version_fails_the_check():
    """Family.encoder_bytes passes the vLLM version; a module written to the older signature was a TypeError at plan
    time (found merging two family branches), now an import-time failure naming the module."""
    import types

    from diagnostics.families import gemma3

    old = types.ModuleType("diagnostics.families.fake")
    for name in families.REQUIRED:
        setattr(old, name, getattr(gemma3, name))
    old.encoder_bytes = lambda model, prof, db, eager, tp, coef: {}
    with pytest.raises(RuntimeError, match="fake's encoder_bytes takes no version"):
        families.check([old])
