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
    assert mm_guard_notes(M, Version(0, 20, 0), {"mm_dummy_options": {"video": {"num_frames": 4}}}, {"video": 1024}) == []
