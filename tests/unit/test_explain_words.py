"""diagnostics.explain.words: figures as vLLM prints them, settings as --set takes them, vLLM's own breakdown."""

from __future__ import annotations

from diagnostics.explain.words import assign, breakdown, est, fix_words, num, show


def test_number_and_setting_words():
    assert (num(15.7985), num(15.1), num(2.0), num(-0.23)) == ("15.7985", "15.10", "2.00", "-0.23")
    assert (est(1.234), est(0.0)) == ("1.23", "0.00")
    assert show({"image": 1, "video": 0}) == '{"image": 1, "video": 0}' and show(0.90) == "0.9" and show(True) == "True"
    assert assign("max_num_seqs", 32) == "max_num_seqs=32"
    assert fix_words({"max_model_len": 4096, "gpu_memory_utilization": 1.0}) == \
        "max_model_len=4096, gpu_memory_utilization=1"


def test_breakdown_quotes_vllms_figures_in_its_order():
    text = breakdown({"gpu_total_gib": 23.69, "gpu_memory_utilization": 0.9, "weights_gib": 15.1,
                      "kv_cache_tokens": 72464, "encoder_budget_tokens": 16384, "encoder_items": 15,
                      "encoder_modality": "video"})
    assert text == ("vLLM's own figures: budget 23.69 GiB x 0.90 = 21.32 GiB; weights 15.10 GiB; KV cache 72,464 "
                    "tokens; encoder budget 16,384 tokens profiled with 15 video items.")
    assert breakdown({}) == ""


def test_a_printed_zero_is_rounding_not_an_empty_pool():
    from diagnostics.explain.words import printed_gib

    assert printed_gib(15.7985) == "15.7985 GiB" and printed_gib(0.5) == "0.50 GiB"
    assert printed_gib(0.0) == "under 0.05 GiB (printed as 0)"
    assert "KV cache under 0.05 GiB (printed as 0)" in breakdown({"kv_cache_gib": 0.0})


def test_an_audio_profile_run_goes_through_the_audio_encoder():
    """MiniCPM-o before vLLM 0.30 with video off profiles dummy audios: the advice names the audio encoder."""
    from diagnostics.explain.model import Trial
    from diagnostics.explain.words import _why_encoder
    from diagnostics.predict.estimator import plan

    base = plan("minicpm-o-2_6", "l4", "0.29.0", overrides={"limit_mm_per_prompt": {"video": 0}})
    after = plan("minicpm-o-2_6", "l4", "0.29.0", overrides={"limit_mm_per_prompt": {"video": 0},
                                                             "max_num_batched_tokens": 4096})
    assert base.profile["modality"] == "audio"
    text = _why_encoder("max_num_batched_tokens", base, Trial("max_num_batched_tokens", 4096, 1, after, True, 1.0),
                        "max_num_batched_tokens=4096", "which fits")
    assert "dummy audios through the audio encoder" in text
