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
