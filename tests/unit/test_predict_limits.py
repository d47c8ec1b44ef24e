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
