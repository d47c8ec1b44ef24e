"""The family's own knob in the profile-run advice (explain/oom_advice.family_culprits)."""

from __future__ import annotations

from types import SimpleNamespace

from diagnostics.explain.context import Ctx
from diagnostics.explain.oom_advice import family_culprits, rule_culprits
from diagnostics.models import get_model


def _ctx(model, settings=None, engine="V1"):
    record = SimpleNamespace(settings=settings or {}, error_line=None, platform=None, phase="vision_encoder")
    return Ctx(record, {}, "0.32.0", engine, model, None, None)


def test_qwen_advice_names_max_pixels_and_video_off():
    culprits = family_culprits(_ctx(get_model("qwen2.5-vl-7b")), "encoder_profile")
    assert culprits[0].setting == "mm_processor_kwargs" and culprits[0].suggested == {"max_pixels": 1003520}
    assert '{"video": 0}' in culprits[0].why


def test_llama32_vision_advice_is_max_num_seqs_and_enforce_eager():
    culprits = family_culprits(_ctx(get_model("llama-3.2-11b-vision"), engine="V0"), "encoder_profile")
    assert [c.setting for c in culprits] == ["max_num_seqs", "enforce_eager"]


def test_rules_of_thumb_put_the_family_knob_first_and_minicpm_has_none():
    internvl = rule_culprits(_ctx(get_model("internvl3-8b")), "encoder_profile")
    assert internvl[0].suggested == {"max_patches": 6}
    assert family_culprits(_ctx(get_model("minicpm-v-2_6")), "encoder_profile") == []
    assert family_culprits(_ctx(get_model("qwen2.5-vl-7b")), "activation_peak") == []


def test_with_a_plan_the_family_knob_is_the_largest_value_that_fits_in_its_units():
    from diagnostics.predict.estimator import plan

    held = {"max_model_len": 32768, "limit_mm_per_prompt": {"video": 0}, "mm_processor_kwargs": {"max_pixels": 25000000}}
    p = plan("qwen2.5-vl-7b", "4090", "0.32.0", "llm", held)
    record = SimpleNamespace(settings=held, error_line=None, platform=None, phase="vision_encoder")
    culprit = family_culprits(Ctx(record, {}, "0.32.0", "V1", p.model, p.card, p), "encoder_profile")[0]
    assert culprit.suggested == {"max_pixels": 15926960}
    assert "20315 x 28 x 28 px" in culprit.why and "plan --fit max_pixels" in culprit.why
    refit = plan("qwen2.5-vl-7b", "4090", "0.32.0", "llm", {**held, "mm_processor_kwargs": culprit.suggested})
    assert refit.verdict == "ok"


def test_a_sized_profile_oom_prefers_a_fix_that_keeps_the_profile_run_and_reads_the_knob_in_units():
    from diagnostics.cards import get_card
    from diagnostics.explain.oom_advice import oom_profile
    from diagnostics.predict.estimator import plan

    p = plan("qwen2.5-vl-7b", "v100-32", "0.32.0", "llm", {})
    record = SimpleNamespace(settings={}, error_line=None, platform=None, phase="vision_encoder", outcome="oom_profile",
                             evidence=[], numbers={}, engine="V1", vllm_version="0.32.0")
    n = {"oom_tried_gib": 4.69, "oom_free_gib": 3.56, "gpu_total_gib": 31.74}
    ex = oom_profile(Ctx(record, n, "0.32.0", "V1", p.model, get_card("v100-32"), p))
    alone = {c.setting for c in ex.culprits if c.fixes_alone}
    assert "skip_mm_profiling" in alone and len(alone) > 1
    assert ex.fix and "skip_mm_profiling" not in ex.fix
    knob = next(c for c in ex.culprits if c.setting == "mm_processor_kwargs")
    n_tokens = knob.suggested["max_pixels"] // 784
    assert f"({n_tokens} x 28 x 28 px: at most {n_tokens:,} tokens per image)" in knob.why
