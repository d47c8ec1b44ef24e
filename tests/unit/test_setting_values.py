"""setting_values.py: mm_processor_kwargs values the families' processors cannot take are one line (newcomer pass:
they were tracebacks in the Qwen/InternVL/Gemma 3 item arithmetic, and max_pixels=1e18 never finished)."""

from __future__ import annotations

import pytest

from diagnostics.cli import main
from diagnostics.errors import UsageError
from diagnostics.setting_values import check_value


@pytest.mark.parametrize("kwargs, words", [
    ({"max_pixels": -1}, "max_pixels must be a whole number from 1 to 1,000,000,000"),
    ({"max_pixels": "big"}, "max_pixels must be a whole number"),
    ({"max_pixels": 12.5}, "max_pixels must be a whole number"),
    ({"max_pixels": 0}, "max_pixels must be a whole number"),
    ({"max_pixels": 10**18}, "max_pixels must be a whole number from 1 to 1,000,000,000"),
    ({"max_dynamic_patch": "x"}, "max_dynamic_patch must be a whole number"),
    ({"max_dynamic_patch": -1}, "max_dynamic_patch must be a whole number"),
    ({"pan_and_scan_max_num_crops": -2}, "pan_and_scan_max_num_crops must be a whole number"),
    ({"do_pan_and_scan": "yes"}, "do_pan_and_scan must be true or false"),
    ({"min_pixels": 10_000_000, "max_pixels": 1000}, "min_pixels is above max_pixels"),
    ({"num_frames": 0}, "num_frames must be a whole number"),
])
def test_a_processor_value_the_family_cannot_take_is_one_line(kwargs, words):
    with pytest.raises(UsageError, match=words):
        check_value("mm_processor_kwargs", kwargs)


@pytest.mark.parametrize("model, kwargs", [
    ("qwen2.5-vl-7b", '{"max_pixels":-1}'), ("qwen2.5-vl-7b", '{"max_pixels":1e30}'),
    ("qwen3-vl-8b", '{"max_pixels":0.5}'), ("internvl3-8b", '{"max_dynamic_patch":"x"}'),
    ("gemma-3-4b", '{"do_pan_and_scan":"yes"}'),
])
def test_plan_answers_them_in_one_line_and_exit_2(model, kwargs, capsys):
    assert main(["plan", "--model", model, "--no-vllm-exact", "--set", f"mm_processor_kwargs={kwargs}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vllm-memcheck plan: error: setting mm_processor_kwargs=") and "\n" not in err


def test_values_the_families_take_still_plan(capsys):
    check_value("mm_processor_kwargs", {"max_pixels": 1003520, "min_pixels": 3136, "do_pan_and_scan": True})
    assert main(["plan", "--model", "qwen2.5-vl-7b", "--no-vllm-exact", "--set",
                 'mm_processor_kwargs={"max_pixels":1003520}']) == 0


@pytest.mark.parametrize("limits, words", [
    ({"video": {"count": 1, "num_frames": 0}}, "video.num_frames must be a whole number from 1"),
    ({"video": {"count": 1, "width": 0}}, "video.width must be a whole number from 1"),
    ({"image": {"count": 1, "height": 0}}, "image.height must be a whole number from 1"),
    ({"image": {"count": 1, "num_frames": 4}}, "image.num_frames is not a dummy option of image; accepted keys for "
                                               "image: count, width, height"),
    ({"image": {"count": -1}}, "image.count must be a whole number from 0"),
    ({"audio": {"count": 1, "num_frames": 4}}, "accepted keys for audio: count"),
])
def test_dummy_options_follow_vllm_bounds(limits, words):
    """vLLM 0.32 config/multimodal.py:212-239: count ge=0, num_frames/width/height gt=0, extra keys forbidden."""
    with pytest.raises(UsageError, match=words):
        check_value("limit_mm_per_prompt", limits)


def test_plan_refuses_zero_frames_in_one_line(capsys):
    assert main(["plan", "--model", "qwen2.5-vl-7b", "--card", "4090", "--vllm", "0.32.0", "--no-vllm-exact",
                 "--set", "max_model_len=16384", "--set",
                 'limit_mm_per_prompt={"video":{"count":1,"num_frames":0}}']) == 2
    err = capsys.readouterr().err.strip()
    assert "video.num_frames must be a whole number from 1" in err and "\n" not in err


def test_dummy_options_vllm_takes_still_pass():
    check_value("limit_mm_per_prompt", {"video": {"count": 1, "num_frames": 4, "width": 64, "height": 64},
                                        "image": {"count": 0, "width": 1, "height": 1}, "audio": 1})


@pytest.mark.parametrize("version, fmt, words", [
    ("0.32.0", "gguf", "setting load_format=gguf: vLLM 0.32.0 has no gguf loader (gone since vLLM 0.24.0)"),
    ("0.32.0", "GGUF", "setting load_format=gguf: vLLM 0.32.0 has no gguf loader"),
    ("0.32.0", "bitsandbytes", "vLLM 0.32.0 has no bitsandbytes loader (gone since vLLM 0.28.0)"),
    ("0.20.0", "gguf", "setting load_format=gguf: openbmb/MiniCPM-V-2_6 has no .gguf file"),
])
def test_a_load_format_the_version_or_checkpoint_cannot_load_is_refused(version, fmt, words, capsys):
    """load_format=gguf planned as a normal start on 0.32 (LoadFormats, model_loader/__init__.py:33, has no gguf)."""
    assert main(["plan", "--card", "4090", "--vllm", version, "--no-vllm-exact", "--set", f"load_format={fmt}"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err


def test_load_formats_the_version_has_still_plan():
    assert main(["plan", "--card", "4090", "--vllm", "0.32.0", "--no-vllm-exact", "--set",
                 "load_format=safetensors"]) == 0
    assert main(["plan", "--card", "4090", "--vllm", "0.23.0", "--no-vllm-exact", "--set",
                 "load_format=bitsandbytes"]) == 0
