"""A stored VLM's default matrix: vlm.toml's max_model_len / max_num_seqs axes and its family's knob axes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from diagnostics.families.common import Knob
from diagnostics.models import get_model, hub_id, stored_models
from diagnostics.suite.family_matrix import BASE_AXES, default_matrix, knob_axes, knob_values
from diagnostics.suite.matrix import load_matrix
from diagnostics.suite.run import SHIPPED_VLM_MATRIX

pytest_plugins = ["pytester"]


def _axes(matrix) -> dict[str, list]:
    """setting -> the values the axis combinations take (scenarios left out)."""
    out: dict[str, list] = {}
    for combo in matrix.combinations:
        if combo.scenario is None:
            for key, value in combo.settings.items():
                if value not in out.setdefault(key, []):
                    out[key].append(value)
    return out


@pytest.mark.parametrize("name", stored_models())
def test_every_stored_models_hub_id_gets_a_matrix_whose_axes_are_its_knobs(name):
    fam = get_model(name).family
    matrix = default_matrix(None, hub_id(name))
    axes = _axes(matrix)
    knob_settings = {k.setting for k in fam.knobs if knob_values(k)}
    assert set(axes) == set(BASE_AXES) | knob_settings, name
    assert "gpu_memory_utilization" not in axes  # vlm.toml's third axis is not a knob
    shipped = load_matrix(SHIPPED_VLM_MATRIX)
    assert axes["max_model_len"] == _axes(shipped)["max_model_len"]
    for k in fam.knobs:
        got = axes[k.setting]
        if k.setting in BASE_AXES:  # Llama-3.2-Vision's max_num_seqs: the base axis covers its values
            assert set(knob_values(k)) <= set(got), name
        elif k.key is None or not isinstance(got[0], dict):
            assert all(v in got for v in knob_values(k)), name
        else:
            # Knob.current reads the key inside each axis value (nested for a dotted key: size.longest_edge)
            assert [v for v in knob_values(k)] == list(dict.fromkeys(k.current({k.setting: d}) for d in got)), (
                name, k.key)
    assert {c.scenario for c in matrix.combinations} >= {"defaults", "one-image"}  # vlm.toml's scenarios kept
    assert matrix.name == f"vlm-{fam.variant}"


def test_the_knob_values_come_from_the_knobs_data():
    qwen = get_model("qwen2.5-vl-7b").family
    axes = knob_axes(qwen.knobs)
    assert axes["mm_processor_kwargs"] == [{"max_pixels": 12845056}, {"max_pixels": 1280 * 28 * 28}]
    assert axes["limit_mm_per_prompt"] == [{"video": 1}, {"video": 0}]
    # InternVL's max_patches acts only with crop_to_patches (off in the stored processor): every value carries it
    intern = knob_axes(get_model("internvl3-8b").family.knobs)["mm_processor_kwargs"]
    assert intern == [{"crop_to_patches": True, "max_patches": 12}, {"crop_to_patches": True, "max_patches": 6}]
    # a flag takes both values; a knob whose advice is its default takes the next step down
    assert knob_values(Knob("enforce_eager", None, "flag", False, True, "x")) == [False, True]
    assert knob_values(Knob("mm_processor_kwargs", "max_slice_nums", "slices", 4, 4, "x", halve=True)) == [4, 2]
    # a value the data leaves unset (None) is no axis value; a knob with none gives no axis
    assert knob_values(Knob("mm_processor_kwargs", "max_frames", "frames", None, 8, "x")) == [8]
    assert knob_axes([Knob("mm_processor_kwargs", "k", "n", None, None, "x")]) == {}
    # two knobs on one dict setting combine into one axis
    both = knob_axes([Knob("mm_processor_kwargs", "a", "n", 2, 1, "x"),
                      Knob("mm_processor_kwargs", "b", "n", 3, 1, "x")])
    assert both == {"mm_processor_kwargs": [{"a": 2, "b": 3}, {"a": 2, "b": 1}, {"a": 1, "b": 3}, {"a": 1, "b": 1}]}


def test_a_matrix_file_is_run_as_written_and_other_models_keep_the_shipped_matrix():
    assert "gpu_memory_utilization" in _axes(default_matrix(str(SHIPPED_VLM_MATRIX), "Qwen/Qwen2.5-VL-7B-Instruct"))
    assert default_matrix(None, "openbmb/MiniCPM-V-2_6").name == "minicpm-v-2_6"  # the built-in keeps its own


STAND_IN = """
    import pytest
    pytestmark = pytest.mark.gpu

    def test_startup(memcheck, memcheck_combination):
        print("RAN", memcheck_combination.id)
"""


@pytest.mark.parametrize("hub, first, last", [
    ("openbmb/MiniCPM-V-4_5", "mml4096-seqs16-kwmax_slice_nums9-mmvideo1",
     "mml32768-seqs256-kwmax_slice_nums4-mmvideo0"),
    ("Qwen/Qwen2.5-VL-7B-Instruct", "mml4096-seqs16-kwmax_pixels12845056-mmvideo1",
     "mml32768-seqs256-kwmax_pixels1003520-mmvideo0"),
])
def test_pytest_collects_the_family_matrix_for_a_hub_id(pytester, hub, first, last):
    pytester.makepyfile(test_startup=textwrap.dedent(STAND_IN))
    pytester.makeconftest("import diagnostics.suite.plugin as _plugin\n_plugin.vllm_missing = lambda: None\n")
    result = pytester.runpytest_subprocess("-p", "diagnostics.suite.plugin", "-p", "no:cacheprovider", "-m", "gpu",
                                           "--card=4090", f"--model={hub}", "--collect-only", "-q")
    assert result.ret == 0, result.stderr.str()
    ids = [line.split("[", 1)[1].rstrip("]") for line in result.outlines if "test_startup[" in line]
    assert len(ids) == 3 * 3 * 2 * 2 + 2, ids
    assert ids[0] == first and last in ids and ids[-2:] == ["defaults", "one-image"]
    assert not any("util" in i for i in ids)
    assert "(38 combinations)" in result.stdout.str()


def test_minicpm_o_s_matrix_turns_its_audio_off_as_it_turns_video_off():
    """The audio knob is data (families/minicpmo.py knobs): pytest -m gpu --model openbmb/MiniCPM-o-2_6 crosses
    {"audio": 0} with {"video": 0}; limit_mm_per_prompt accepts audio (setting_values.MODALITIES)."""
    axes = knob_axes(get_model("minicpm-o-2_6").family.knobs)
    assert {"video": 0, "audio": 0} in axes["limit_mm_per_prompt"] and len(axes["limit_mm_per_prompt"]) == 4
    assert default_matrix(None, "openbmb/MiniCPM-o-2_6").name == "vlm-minicpm-o-2_6"


def test_a_local_text_model_gets_a_text_matrix_and_a_broken_config_one_usage_line(pytester):  # newcomer pass
    text_model = Path(__file__).resolve().parents[1] / "data" / "models" / "qwen3-8b"
    matrix = default_matrix(None, str(text_model))
    assert matrix.name == "vlm-text" and len(matrix.combinations) == 3 * 3 + 1
    assert all(not set(c.settings) & {"limit_mm_per_prompt", "mm_processor_kwargs", "gpu_memory_utilization"}
               for c in matrix.combinations)
    pytester.makepyfile(test_startup=textwrap.dedent(STAND_IN))
    pytester.makeconftest("import diagnostics.suite.plugin as _plugin\n_plugin.vllm_missing = lambda: None\n")
    (pytester.path / "garbage").mkdir()
    (pytester.path / "garbage" / "config.json").write_text("not json {")
    for model, ret in ((text_model, 0), (pytester.path / "garbage", 4)):
        result = pytester.runpytest_subprocess("-p", "diagnostics.suite.plugin", "-p", "no:cacheprovider", "-m",
                                               "gpu", "--card=4090", f"--model={model}", "--collect-only")
        assert result.ret == ret, result.stderr.str()
        assert ret or "vlm.toml (10 combinations)" in result.stdout.str()
    errors = [line for line in result.stderr.str().splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: --model {pytester.path / 'garbage'}: cannot read ")
    assert "accepted: a model directory whose config.json" in errors[0]
