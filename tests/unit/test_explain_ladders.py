"""diagnostics.explain.ladders: candidate values per setting, nearest first, only where the version has the knob."""

from __future__ import annotations

import pytest

from diagnostics.errors import UsageError
from diagnostics.explain.ladders import SEARCHED, ladder, powers_below, relative_change
from diagnostics.predict import estimator

MINICPM = "minicpm-v-2_6"


def _plan(card, version, **overrides):
    return estimator.plan(MINICPM, card, version, "llm", overrides=overrides)


def test_powers_below_relative_change_and_unknown_setting():
    assert powers_below(100, 16) == [64, 32, 16] and powers_below(64, 16) == [32, 16] and powers_below(None, 1) == []
    assert relative_change(256, 64) == 0.75 and relative_change(False, True) == 1.0 and relative_change(None, 1) == 1.0
    with pytest.raises(UsageError, match="accepted: " + SEARCHED[0]):
        ladder("block_size", _plan("3090", "0.6.3"), "oom_profile")


def test_ladders_walk_powers_of_two_down():
    p = _plan("3090", "0.6.3")
    assert ladder("max_num_seqs", p, p.verdict) == [128, 64, 32, 16, 8, 4, 2, 1]
    assert ladder("max_model_len", p, p.verdict) == [16384, 8192, 4096, 2048, 1024, 512, 256]
    q = _plan("3090", "0.6.3", max_model_len=2096)
    assert ladder("max_model_len", q, q.verdict) == [2048, 1024, 512, 256]


def test_version_specific_knobs_only_where_vllm_has_them():
    old = _plan("3090", "0.6.3")
    for knob in ("skip_mm_profiling", "kv_cache_memory_bytes", "mm_processor_kwargs"):
        assert ladder(knob, old, "no_kv_cache") == [], knob
    assert ladder("limit_mm_per_prompt", old, "oom_profile") == []  # image-only registry, limit 1
    assert ladder("skip_mm_profiling", _plan("3090", "0.10.0"), "oom_profile") == []
    assert ladder("skip_mm_profiling", _plan("3090", "0.10.1"), "oom_profile") == [True]
    assert ladder("kv_cache_memory_bytes", _plan("3090", "0.10.1"), "no_kv_cache") == []
    assert ladder("kv_cache_memory_bytes", _plan("3090", "0.10.2"), "no_kv_cache") != []
    v1 = _plan("3090", "0.33.0")
    assert {"image": 999, "video": 0} in ladder("limit_mm_per_prompt", v1, "oom_profile")


def test_each_vlm_family_searches_its_own_processor_knob():
    from diagnostics.explain.ladders import LADDERS
    from diagnostics.predict.estimator import plan

    qwen = LADDERS["mm_processor_kwargs"](plan("qwen2.5-vl-7b", "4090", "0.32.0"), "oom_profile")
    assert qwen[0] == {"max_pixels": 4096 * 784} and qwen[-1] == {"max_pixels": 256 * 784}
    internvl = plan("internvl3-8b", "4090", "0.32.0", overrides={"mm_processor_kwargs": {"crop_to_patches": True}})
    assert LADDERS["mm_processor_kwargs"](internvl, "oom_profile")[0] == {"crop_to_patches": True, "max_patches": 8}
    assert LADDERS["mm_processor_kwargs"](plan("llava-1.5-7b", "4090", "0.32.0"), "oom_profile") == []
    # a nested knob (Mistral 3's size.longest_edge) is stepped inside its dict, the user's other kwargs kept
    mistral = plan("mistral-small-3.1-24b", "4090", "0.32.0", overrides={"mm_processor_kwargs": {"do_resize": True}})
    steps = LADDERS["mm_processor_kwargs"](mistral, "oom_profile")
    assert steps[0] == {"do_resize": True, "size": {"longest_edge": 1232}} and steps[-1]["size"] == {"longest_edge": 448}


def test_dtype_ladder_offers_16_bit_only_for_float32():
    f32 = estimator.plan("minicpm-v-2_6", "v100-32", "0.33.0", overrides={"dtype": "float32"})
    assert ladder("dtype", f32, "oom_weights") == ["float16"]  # compute capability 7.0: no bfloat16
    f32 = estimator.plan("minicpm-v-2_6", "a100-80", "0.33.0", overrides={"dtype": "float32"})
    assert ladder("dtype", f32, "oom_weights") == ["bfloat16"]
    assert ladder("dtype", estimator.plan("minicpm-v-2_6", "3090", "0.33.0"), "oom_profile") == []
    assert "dtype" in SEARCHED


def test_the_fitted_knob_value_comes_first_and_the_fix_keeps_the_profile_run():
    from diagnostics.explain.ladders import LADDERS
    from diagnostics.explain.search import explain_plan
    from diagnostics.predict.estimator import plan

    held = {"max_model_len": 32768, "limit_mm_per_prompt": {"video": 0}, "mm_processor_kwargs": {"max_pixels": 25000000}}
    p = plan("qwen2.5-vl-7b", "4090", "0.32.0", "llm", held)
    steps = LADDERS["mm_processor_kwargs"](p, p.verdict)
    assert steps[0] == {"max_pixels": 15926960} and steps[1] == {"max_pixels": 4096 * 784}
    ex = explain_plan(p)
    # skip_mm_profiling fixes the start too, but by no longer guarding requests: the knob is the fix
    assert any(c.setting == "skip_mm_profiling" and c.fixes_alone for c in ex.culprits)
    assert ex.fix == {"mm_processor_kwargs": {"max_pixels": 15926960}}
    knob = next(c for c in ex.culprits if c.setting == "mm_processor_kwargs")
    assert "(20315 x 28 x 28 px: at most 20,315 tokens per image)" in knob.why


def test_a_kv_pool_far_above_the_card_offers_the_largest_pool_the_card_holds():
    """kv_cache_memory_bytes=10**15 (a typo's zeros) was answered with a 232,830 GiB "fix" (halving from the
    pool never reaches the card); now the ladder has the largest whole-256-MiB pool the card leaves, and it plans."""
    from diagnostics.cards import get_card
    from diagnostics.explain.search import explain_plan
    from diagnostics.models import get_model

    p = estimator.plan(get_model("minicpm-v-2_6"), get_card("3090"), "0.32.0", "llm",
                       {"kv_cache_memory_bytes": 10**15})
    assert p.verdict == "oom_kv_alloc"
    steps = ladder("kv_cache_memory_bytes", p, p.verdict)
    assert steps and min(steps) < get_card("3090").total_gib * (1 << 30) and min(steps) % (256 << 20) == 0
    fix = explain_plan(p).fix
    assert fix.get("kv_cache_memory_bytes", 10**15) < get_card("3090").total_gib * (1 << 30)
    again = estimator.plan(get_model("minicpm-v-2_6"), get_card("3090"), "0.32.0", "llm", {**p.overrides, **fix})
    assert again.verdict == "ok"


def test_the_limit_ladder_turns_off_every_modality_the_family_has_audio_included():
    """MiniCPM-o profiles a dummy audio too: the ladder offers audio off as it offers video off (before: image and
    video only, so an audio-heavy profile run had no limit step)."""
    o = estimator.plan("minicpm-o-2_6", "3090", "0.29.0", overrides={"limit_mm_per_prompt": {"image": 2}})
    assert ladder("limit_mm_per_prompt", o, "oom_profile") == [
        {"image": 2, "video": 0, "audio": 999}, {"image": 2, "video": 999, "audio": 0},
        {"image": 2, "video": 0, "audio": 0}, {"image": 1, "video": 999, "audio": 999},
        {"image": 1, "video": 0, "audio": 0}]
    v = estimator.plan("minicpm-v-2_6", "3090", "0.29.0", overrides={"limit_mm_per_prompt": {"image": 2}})
    assert all("audio" not in step for step in ladder("limit_mm_per_prompt", v, "oom_profile"))
