"""predict/mm_fit.py: `plan --fit KNOB` for each family's multimodal knob, checked by re-planning at the answer
(ok, vLLM would not refuse) and one step above (not ok), the knob frontier, the units and the refusals."""

from __future__ import annotations

import math

import pytest

from diagnostics.errors import UsageError
from diagnostics.predict.estimator import plan
from diagnostics.predict.mm_fit import (ALIASES, KNOB_NAMES, apply, find_knob, fit_knob, knob_frontier, knob_value,
                                        knobs_of)
from diagnostics.settings import vllm_refusal

V = "0.32.0"
NO_VIDEO = {"limit_mm_per_prompt": {"video": 0}}
# (model, knob, card, held settings): one case per family with a size knob where the answer is inside the domain
INTERIOR = [
    ("qwen2-vl-7b", "max_pixels", "l4", {"max_model_len": 16384, "max_num_batched_tokens": 2048, **NO_VIDEO}),
    ("qwen2.5-vl-7b", "max_pixels", "l4", {"max_model_len": 32768, "max_num_batched_tokens": 2048, **NO_VIDEO}),
    ("qwen3-vl-8b", "max_pixels", "3090", {"max_model_len": 16384, "max_num_batched_tokens": 2048, **NO_VIDEO}),
    ("internvl3-8b", "max_patches", "l4", {"max_model_len": 32768, "max_num_batched_tokens": 2048, **NO_VIDEO}),
    ("gemma-3-4b", "pan_and_scan_max_num_crops", "t4", {"max_model_len": 8192, "max_num_batched_tokens": 2048}),
    ("gemma-3-12b", "pan_and_scan_max_num_crops", "a100-40",
     # 0.75: with vLLM's sliding-window pool (issue 20) 0.8 leaves room for every crop count up to the domain's top
     {"max_model_len": 8192, "max_num_batched_tokens": 256, "gpu_memory_utilization": 0.75}),
    ("minicpm-v-2_6", "max_slice_nums", "l4",
     {"max_model_len": 4096, "max_num_batched_tokens": 2048, "gpu_memory_utilization": 0.8, **NO_VIDEO}),
    ("minicpm-v-2_6", "num_frames", "l4", {"max_model_len": 4096, "max_num_batched_tokens": 8192}),
    ("qwen2.5-vl-7b", "num_frames", "3090", {"max_model_len": 32768, "max_num_batched_tokens": 2048}),
]


def _replan(model, card, held, knob, value):
    return plan(model, card, V, "llm", apply(knob, value, held))


@pytest.mark.parametrize("model, name, card, held", INTERIOR, ids=[f"{c[0]}-{c[1]}" for c in INTERIOR])
def test_answer_replans_ok_and_one_step_above_does_not(model, name, card, held):
    f = fit_knob(name, model, card, V, "llm", held)
    assert f.value is not None and f.above is not None and f.value % f.knob.step == 0
    at = _replan(model, card, held, f.knob, f.value)
    assert at.verdict == "ok" and vllm_refusal(at.settings, at.model) is None
    above = _replan(model, card, held, f.knob, f.value + f.knob.step)
    assert above.verdict != "ok" and f.above_value == f.value + f.knob.step
    assert (above.verdict, round(above.peak_gib, 6)) == (f.above.verdict, round(f.above.peak_gib, 6))
    # the knob really moved the profile run: the item is bigger one step above (or, for num_frames, the frames)
    assert (above.profile["encoder_slices"], above.profile["tokens_per_item"]) != (
        at.profile["encoder_slices"], at.profile["tokens_per_item"])
    assert knob_value(f.knob, at.overrides) == f.value


def test_qwen_pixels_are_factor_multiples_and_read_in_tokens():
    f = fit_knob("max_pixels", "qwen2.5-vl-7b", "l4", V, "llm", INTERIOR[1][3])
    assert f.knob.step == 28 * 28 and f.knob.unit == "28 x 28 px"
    n = f.value // 784
    assert f.knob.label(f.value) == f"{f.value:,} ({n} x 28 x 28 px: at most {n:,} tokens per image)"
    # one 28 x 28 step is one LLM token of the largest dummy image (video off), unless n is prime: no factor pair
    # within aspect 200 then, and the image with the most features has n - 1 (qwen_vl._most_features)
    tokens = f.at.profile["tokens_per_modality"]["image"]
    assert tokens == n or (tokens == n - 1 and all(n % d for d in range(2, math.isqrt(n) + 1)))
    assert find_knob("max_pixels", "qwen3-vl-8b", V).step == 32 * 32


def test_size_knob_domain_stops_at_the_item_one_request_can_carry():
    held = {"max_model_len": 2048, "max_num_batched_tokens": 2048, **NO_VIDEO}
    f = fit_knob("max_pixels", "qwen2.5-vl-3b", "a100-80", V, "llm", held)
    assert f.value == f.knob.hi == 2048 * 784 and f.above is None
    assert "longer than max_model_len (2048)" in f.knob.top_reason
    minicpm = find_knob("max_slice_nums", "minicpm-v-2_6", V, plan("minicpm-v-2_6", "l4", V, "llm", held).settings)
    assert minicpm.hi == 9 and "max_slice_num (9)" in minicpm.top_reason
    short = plan("minicpm-v-2_6", "l4", V, "llm", {**held, "max_model_len": 512}).settings
    assert find_knob("max_slice_nums", "minicpm-v-2_6", V, short).hi == 7  # (7 + 1) x 64 = 512 tokens
    internvl = find_knob("max_dynamic_patch", "internvl3-8b", V, plan("internvl3-8b", "l4", V, "llm", held).settings)
    assert internvl.name == "max_patches" and (internvl.hi + 1) * 256 <= 2048 < (internvl.hi + 2) * 256


def test_companion_switch_is_set_with_the_knob_and_said():
    k = find_knob("pan_and_scan_max_num_crops", "gemma-3-4b", V)
    assert apply(k, 3, {"mm_processor_kwargs": {"foo": 1}}) == {
        "mm_processor_kwargs": {"foo": 1, "pan_and_scan_max_num_crops": 3, "do_pan_and_scan": True}}
    assert "do_pan_and_scan=true" in k.note
    k = find_knob("max_patches", "internvl3-8b", V)
    assert dict(k.extra) == {"crop_to_patches": True}


def test_counts_keep_the_other_modality_and_dummy_options():
    k = find_knob("limit_mm_per_prompt.image", "minicpm-v-2_6", V)
    assert apply(k, 4, {"limit_mm_per_prompt": {"video": 0}}) == {"limit_mm_per_prompt": {"video": 0, "image": 4}}
    frames = find_knob("num_frames", "minicpm-v-2_6", V)
    assert apply(frames, 8, {"limit_mm_per_prompt": {"video": 2}}) == {
        "limit_mm_per_prompt": {"video": {"count": 2, "num_frames": 8}}}
    assert not frames.guards and "did not measure" in frames.note


def test_count_fit_with_items_capped_reaches_the_top():
    # images per prompt beyond max_model_len // T do not change what the profile run pushes (encoder_budget.py:163)
    f = fit_knob("limit_mm_per_prompt.image", "qwen2.5-vl-7b", "a100-80", V, "llm",
                 {"max_model_len": 8192, **NO_VIDEO})
    assert f.value == 999 and f.above is None and f.at.verdict == "ok"


def test_a_knob_that_does_not_touch_the_profiled_modality_says_so():
    f = fit_knob("max_slice_nums", "minicpm-v-2_6", "3090", V, "llm", {"max_model_len": 8192})
    assert f.value is None
    assert any("dummy items are video items" in n for n in f.notes())


def test_skip_mm_profiling_held_says_nothing_is_guarded():
    f = fit_knob("max_pixels", "qwen2.5-vl-7b", "a100-80", V, "llm",
                 {"max_model_len": 8192, "skip_mm_profiling": True, **NO_VIDEO})
    assert any("none is guarded" in n for n in f.notes())


def test_refused_held_settings_make_nothing_ok():
    held = {"max_model_len": 4096, "max_num_batched_tokens": 64, "max_num_seqs": 128, **NO_VIDEO}
    f = fit_knob("max_pixels", "qwen2.5-vl-7b", "a100-80", V, "llm", held)
    assert f.value is None and "max_num_seqs" in f.refusal


def test_non_monotone_turns_and_failing_values_below_are_listed():
    """MiniCPM-V's V1 profile: items = encoder budget // tokens per item, so fewer slices can mean more ViT work
    (a sawtooth). The 1..9 domain is planned whole: the answer, the turn back to ok and every failing value below."""
    held = {"max_model_len": 4096, "max_num_batched_tokens": 2048, "gpu_memory_utilization": 0.8, **NO_VIDEO}
    f = fit_knob("max_slice_nums", "minicpm-v-2_6", "l4", V, "llm", held)
    verdicts = {n: _replan("minicpm-v-2_6", "l4", held, f.knob, n).verdict == "ok" for n in range(1, 10)}
    assert f.value == max(n for n, ok in verdicts.items() if ok)
    assert f.failing_below == [n for n, ok in verdicts.items() if not ok and n < f.value]
    assert f.non_monotone and all(verdicts[t] and not verdicts[t - 1] for t in f.non_monotone)
    assert f.plans == 9


def test_frontier_both_ways():
    held = {"max_num_batched_tokens": 2048, **NO_VIDEO}
    rows = knob_frontier("max_model_len", "max_pixels", "qwen2.5-vl-7b", "4090", V, "llm", held)
    assert [v // 784 for v, _ in rows] == [256, 512, 1024, 1280, 2048, 4096, 8192, 16384]
    for v, f in rows:
        if f.value is not None:
            p = plan("qwen2.5-vl-7b", "4090", V, "llm", {**held, "max_model_len": f.value,
                                                         "mm_processor_kwargs": {"max_pixels": v}})
            assert p.verdict == "ok"
    values = [f.value for _, f in rows]
    assert values[0] is not None and values[0] >= (values[-1] or 0)
    rows = knob_frontier("max_pixels", "max_model_len", "qwen2.5-vl-7b", "4090", V, "llm", held)
    assert [v for v, _ in rows] == [1024, 2048, 4096, 8192, 16384, 32768]
    assert all(f.value is None or f.at.verdict == "ok" for _, f in rows)


@pytest.mark.parametrize("call, fragment", [
    (lambda: fit_knob("max_pixels", "minicpm-v-2_6", "3090", V), "accepted: max_slice_nums, num_frames"),
    (lambda: fit_knob("max_slice_nums", "minicpm-v-2_6", "3090", "0.8.3"), "not a multimodal knob"),
    (lambda: fit_knob("num_frames", "minicpm-v-2_6", "3090", "0.20.0"), "not a multimodal knob"),
    (lambda: fit_knob("max_pixels", "qwen2-vl-7b", "3090", "0.6.1"), "accepted: limit_mm_per_prompt.image"),
    (lambda: fit_knob("max_pixels", "qwen2.5-vl-7b", "4090", V, "llm",
                      {"mm_processor_kwargs": {"max_pixels": 1003520}}), "together"),
    (lambda: fit_knob("limit_mm_per_prompt.video", "qwen2.5-vl-7b", "4090", V, "llm", NO_VIDEO), "together"),
    (lambda: knob_frontier("max_pixels", "max_slice_nums", "qwen2.5-vl-7b", "4090", V), "one engine setting"),
    (lambda: knob_frontier("max_model_len", "max_pixels", "qwen2.5-vl-7b", "4090", V, "llm",
                           {"mm_processor_kwargs": {"max_pixels": 1003520}}), "drop it from the --set"),
])
def test_bad_knobs_are_usage_errors(call, fragment):
    with pytest.raises(UsageError, match=fragment):
        call()


def test_every_knob_name_and_alias_is_known():
    models = ("minicpm-v-2_6", "qwen2.5-vl-7b", "internvl3-8b", "gemma-3-4b", "llava-onevision-7b", "phi-4-multimodal",
              "minicpm-o-2_6")
    names = {k.name for m in models for k in knobs_of(m, V)}
    assert names == set(KNOB_NAMES)
    assert set(ALIASES.values()) <= set(KNOB_NAMES)


def test_search_images_fill_the_knob_at_the_probed_value():
    from diagnostics.families.qwen_vl import _tokens
    from diagnostics.models import get_model
    from diagnostics.predict.mm_fit import item_image_size

    qwen = get_model("qwen2.5-vl-7b")
    k = find_knob("max_pixels", qwen, V)
    for n in (4, 1280, 3001):
        w, h = item_image_size(k, n * 784, qwen)
        assert w % 28 == 0 and h % 28 == 0 and w * h <= n * 784
        largest = plan(qwen, "a100-80", V, "llm", {**NO_VIDEO, "mm_processor_kwargs": {"max_pixels": n * 784}})
        # the image carries vLLM's max tokens per image at that max_pixels (n, or fewer for a prime n: 3001 -> 3000)
        assert _tokens(qwen.family.shape, (h, w), (3136, n * 784), 1) == \
            largest.profile["tokens_per_modality"]["image"] == (3000 if n == 3001 else n)
    assert item_image_size(find_knob("max_slice_nums", "minicpm-v-2_6", V), 4, "minicpm-v-2_6") == (448, 1792)
    assert item_image_size(find_knob("limit_mm_per_prompt.image", qwen, V), 3, qwen) is None


def test_an_alias_is_answered_in_the_name_asked_for():                                     # newcomer pass
    held = INTERIOR[3][3]
    f = fit_knob("max_dynamic_patch", "internvl3-8b", "l4", V, "llm", held)
    assert (f.setting, f.knob.name, f.to_json()["setting"]) == ("max_dynamic_patch", "max_patches",
                                                                 "max_dynamic_patch")
    assert f.value == fit_knob("max_patches", "internvl3-8b", "l4", V, "llm", held).value


def test_qwen_num_frames_lowers_the_dummy_video_from_0_12_only():
    """vLLM 0.12+ qwen2_vl.py get_dummy_mm_data hands the video options to _get_dummy_videos (min(frames,
    num_frames)); 0.11 takes none, and Qwen3-VL's builder is not modelled: no knob there."""
    held = {"max_model_len": 32768, "max_num_batched_tokens": 2048}
    free = plan("qwen2.5-vl-7b", "3090", V, "llm", held).profile
    capped = plan("qwen2.5-vl-7b", "3090", V, "llm",
                  {**held, "limit_mm_per_prompt": {"video": {"count": 1, "num_frames": 2}}}).profile
    assert (free["modality"], free["encoder_slices"], capped["encoder_slices"]) == ("video", 4, 2)
    # the tower encodes half the frames; MultiModalBudget still counts the uncapped video's tokens per item
    assert capped["vit_tokens"] * 2 == free["vit_tokens"] and capped["tokens_per_item"] == free["tokens_per_item"]
    k = find_knob("num_frames", "qwen2-vl-7b", V)
    assert (k.lo, k.hi, k.guards, k.modalities) == (1, 14, False, ("video",)) and "dummy option" in k.note
    for model, version in (("qwen2.5-vl-7b", "0.11.0"), ("qwen3-vl-8b", V)):
        with pytest.raises(UsageError, match="--fit num_frames: not a multimodal knob"):
            find_knob("num_frames", model, version)
    older = plan("qwen2.5-vl-7b", "3090", "0.12.0", "llm",
                 {**held, "limit_mm_per_prompt": {"video": {"count": 1, "num_frames": 2}}}).profile
    assert older["encoder_slices"] == 2


def test_minicpm_o_has_minicpm_vs_size_knobs_and_an_audio_count():
    """MiniCPM-o's image and video rules are MiniCPM-V's, so max_slice_nums is searched; audio is a count knob
    (before: no size knob for MiniCPM-o, and an audio knob had no words)."""
    from diagnostics.predict.mm_fit import knobs_of

    knobs = {k.name: k for k in knobs_of("minicpm-o-2_6", "0.29.0")}
    assert {"max_slice_nums", "num_frames", "limit_mm_per_prompt.audio"} <= set(knobs)
    assert knobs["limit_mm_per_prompt.audio"].modalities == ("audio",)
    assert knobs["limit_mm_per_prompt.audio"].label(2) == "2 audios per prompt"


@pytest.mark.parametrize("model, knob, limits, words", [
    ("qwen2.5-vl-7b", "max_pixels", {"image": 0, "video": 0}, "--fit max_pixels: image and video are off"),
    ("minicpm-v-2_6", "num_frames", {"video": 0}, "--fit num_frames: video is off"),
    ("minicpm-v-2_6", "max_slice_nums", {"image": 0, "video": 0}, "--fit max_slice_nums: image"),
])
def test_a_size_knob_of_a_modality_that_is_off_is_refused(model, knob, limits, words):
    """It used to answer a confident value (max_pixels 12,845,056; 14 frames) that sizes nothing."""
    with pytest.raises(UsageError, match=words) as e:
        fit_knob(knob, model, "4090", V, "llm", {"limit_mm_per_prompt": limits})
    assert "nothing" in str(e.value) and "accepted: a limit_mm_per_prompt above 0" in str(e.value)


def test_a_size_knob_with_one_of_its_modalities_on_still_fits():
    f = fit_knob("max_pixels", "qwen2.5-vl-7b", "4090", V, "llm",
                 {"limit_mm_per_prompt": {"image": 0}, "max_model_len": 8192})
    assert f.value is not None


def test_skip_mm_profiling_profile_line_says_no_dummy_item(capsys):
    from diagnostics.cli import main
    assert main(["plan", "--model", "qwen2.5-vl-7b", "--card", "4090", "--vllm", V, "--no-vllm-exact", "--set",
                 "skip_mm_profiling=true", "--set", "max_model_len=8192", "--fit", "max_pixels"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("profile run:"))
    assert line.startswith("profile run: no dummy item (skip_mm_profiling=true; without it: 1 dummy video items")


def test_a_frontier_over_a_size_knob_whose_modality_is_off_is_refused_like_the_fit():   # newcomer re-check
    held = {"limit_mm_per_prompt": {"image": 0, "video": 0}}
    with pytest.raises(UsageError, match="--fit max_pixels: image and video are off"):
        knob_frontier("max_model_len", "max_pixels", "qwen2.5-vl-7b", "4090", "0.32.0", "llm", held)
