"""What plan says besides the arithmetic: non-memory blockers, rewritten settings, known limits (audit rows)."""

from __future__ import annotations

from diagnostics.models import MINICPM_V_2_6 as M
from diagnostics.predict.limits import known_limits, setting_notes, startup_blocker
from diagnostics.versions import Version


def test_startup_blocker_minicpmv():
    assert startup_blocker(M, Version(0, 5, 3), "V0") is None  # a missing model class is refused before (families)
    assert "cannot run on the V1 engine" in startup_blocker(M, Version(0, 7, 3), "V1")  # audit b5
    assert startup_blocker(M, Version(0, 7, 3), "V0") is None
    assert startup_blocker(M, Version(0, 8, 3), "V1") is None


def test_setting_notes_name_the_rewrite_only_when_the_user_set_it():
    s = {"max_num_batched_tokens": 8192, "enable_chunked_prefill": True}
    v = Version(0, 9, 2)
    assert any("audit a9" in n for n in setting_notes(v, "V1", {"enable_chunked_prefill": False}, s, None))
    assert not setting_notes(v, "V1", {}, s, None)
    why = "compute capability 7.0 < 8.0: vLLM 0.9.2 falls back to V0"
    assert any(why in n for n in setting_notes(v, "V0", {}, {**s, "enable_chunked_prefill": False}, why))
    assert not any(why in n for n in setting_notes(v, "V0", {"use_v1": False}, s, why))


def test_known_limits_apply_by_version_and_engine():
    assert any("audit c3" in n for n in known_limits(M, Version(0, 8, 5), "V1", {}))
    assert not known_limits(M, Version(0, 8, 5), "V0", {})
    assert any("cuBLAS" in n for n in known_limits(M, Version(0, 33, 0), "V1", {}))


# -- multimodal switches and what the profile run no longer guards (issue #23) ------------------------------------

def test_encoder_tp_data_only_with_tp_and_a_supporting_class():
    from diagnostics.models import get_model
    from diagnostics.predict.limits import encoder_tp_data

    data2 = {"mm_encoder_tp_mode": "data", "tensor_parallel_size": 2}
    assert encoder_tp_data(M, data2) and encoder_tp_data(get_model("qwen2.5-vl-7b"), data2)
    assert not encoder_tp_data(M, {"mm_encoder_tp_mode": "data", "tensor_parallel_size": 1})
    assert not encoder_tp_data(get_model("internvl3-8b"), data2)  # interns1.py: no supports_encoder_tp_data
    # the flag is the family's data (Variant.encoder_tp_data), per variant: MiniCPM-V-4.5 (MiniCPMV4_5 is a
    # MiniCPMVBaseModel, minicpmv.py:1219) and Qwen3-VL-MoE (a Qwen3-VL subclass) have it, Gemma 3 and LLaVA not
    assert encoder_tp_data(get_model("minicpm-v-4_5"), data2) and encoder_tp_data(get_model("qwen3-vl-30b-a3b"), data2)
    assert not encoder_tp_data(get_model("gemma-3-4b"), data2) and not encoder_tp_data(get_model("llava-1.5-7b"), data2)
    assert not encoder_tp_data(M, {"mm_encoder_tp_mode": "weights", "tensor_parallel_size": 2})


def test_mm_guard_notes():
    from diagnostics.models import get_model
    from diagnostics.predict.limits import mm_guard_notes

    v = Version(0, 32, 0)
    assert "changes nothing" in mm_guard_notes(M, v, {"mm_encoder_tp_mode": "data"}, {})[0]
    assert "falls back to weights" in mm_guard_notes(get_model("gemma-3-4b"), v, {
        "mm_encoder_tp_mode": "data", "tensor_parallel_size": 2}, {})[0]
    above = mm_guard_notes(M, v, {"mm_processor_kwargs": {"max_slice_nums": 12}}, {})
    assert len(above) == 1 and "does not guard real images" in above[0]
    assert mm_guard_notes(M, v, {"mm_processor_kwargs": {"max_slice_nums": 9}}, {}) == []
    frames = mm_guard_notes(M, v, {"mm_dummy_options": {"video": {"num_frames": 4}}}, {"video": 1024})
    assert len(frames) == 1 and "up to 1,024 tokens" in frames[0]
    (older,) = mm_guard_notes(M, Version(0, 20, 0), {"mm_dummy_options": {"video": {"num_frames": 4}}}, {"video": 1024})
    assert "reads only the count of a limit_mm_per_prompt object for MiniCPM-V" in older  # not the dummy-only note


def test_an_unknown_mm_processor_kwargs_key_is_named_with_the_keys_the_family_reads():    # newcomer pass
    from diagnostics.predict.estimator import plan

    notes = plan("qwen2.5-vl-7b", "4090", "0.32.0", "llm", {"mm_processor_kwargs": {"max_pixel": 1000}}).notes
    (note,) = [n for n in notes if n.startswith("mm_processor_kwargs max_pixel:")]
    assert "not a key plan reads for qwen2.5-vl (it reads: max_pixels, min_pixels, size" in note
    assert "does not check key names" in note  # vLLM's own behaviour: passed on, not refused
    known = plan("qwen2.5-vl-7b", "4090", "0.32.0", "llm", {"mm_processor_kwargs": {"max_pixels": 1003520}}).notes
    assert not any("not a key plan reads" in n for n in known)
    assert not any("not a key plan reads" in n for n in plan(M, "3090", "0.32.0", "llm", {
        "mm_processor_kwargs": {"max_slice_nums": 4}}).notes)


def test_num_frames_notes_follow_the_family_that_honours_it():                            # issue 23
    from diagnostics.predict.estimator import plan

    frames = {"limit_mm_per_prompt": {"video": {"count": 1, "num_frames": 2}}}
    qwen = plan("qwen2.5-vl-7b", "a100-40", "0.20.0", "llm", {"max_model_len": 32768, **frames}).notes
    assert any(n.startswith("limit_mm_per_prompt video num_frames=2 sizes only the profile run's dummy video")
               for n in qwen)
    assert not any("for MiniCPM-V" in n for n in qwen)  # Qwen2.5-VL honours it from 0.12 (families/qwen_vl.py)
    qwen3 = plan("qwen3-vl-8b", "a100-40", "0.32.0", "llm", frames).notes
    assert "limit_mm_per_prompt video num_frames=2 is not modelled for qwen3-vl: plan counts the dummy video at " \
           "full frames" in qwen3
    assert any("reads only the count of a limit_mm_per_prompt object for MiniCPM-V" in n
               for n in plan(M, "3090", "0.20.0", "llm", frames).notes)


def test_minicpm_o_gets_minicpm_vs_notes_and_its_encoder_tp_data():
    """MiniCPMO subclasses MiniCPMV2_6 in vLLM (minicpmo.py:1004): data mode holds, and the max_slice_nums guard
    note is said for it too (before: both were keyed to the MiniCPM-V module only)."""
    from diagnostics.models import get_model
    from diagnostics.predict.limits import encoder_tp_data, mm_guard_notes

    o = get_model("minicpm-o-2_6")
    assert encoder_tp_data(o, {"mm_encoder_tp_mode": "data", "tensor_parallel_size": 2})
    (above,) = mm_guard_notes(o, Version(0, 32, 0), {"mm_processor_kwargs": {"max_slice_nums": 12}}, {})
    assert "does not guard real images" in above
