"""predict/fit.py: the largest value that plans ok, checked against an exhaustive scan, with few plans."""

from __future__ import annotations

import pytest

from diagnostics.errors import UsageError
from diagnostics.predict import fit as fitmod
from diagnostics.predict.estimator import plan
from diagnostics.predict.fit import FIT_SETTINGS, fit, frontier, max_concurrency

V0_SEEDFIX = {"max_num_seqs": 128}  # 0.6.3 on a 3090: the KV cache, not the position limit, bounds max_model_len


def test_max_model_len_matches_an_exhaustive_scan_with_few_plans():
    f = fit("max_model_len", "minicpm-v-2_6", "3090", "0.6.3", "llm", V0_SEEDFIX)
    scan = [m for m in range(16, 32768 + 1, 16)
            if plan("minicpm-v-2_6", "3090", "0.6.3", "llm", {**V0_SEEDFIX, "max_model_len": m}).verdict == "ok"]
    assert f.value == max(scan) and f.value % 16 == 0
    assert f.at.verdict == "ok" and f.at.settings["max_model_len"] == f.value
    assert f.above.verdict != "ok" and f.above.settings["max_model_len"] == f.value + 16
    assert f.plans <= 30 < len(range(16, 32768 + 1, 16))  # ladder + bisection, not the 2,048-value grid
    assert f.non_monotone == []


def test_block_size_sets_the_resolution():
    f = fit("max_model_len", "minicpm-v-2_6", "3090", "0.6.3", "llm", {**V0_SEEDFIX, "block_size": 32})
    assert f.value % 32 == 0 and f.above.settings["max_model_len"] == f.value + 32
    assert f.above.verdict != "ok"


def test_max_num_seqs_matches_an_exhaustive_scan():
    given = {"gpu_memory_utilization": 1.0}
    f = fit("max_num_seqs", "minicpm-v-2_6", "3090", "0.6.3", "llm", given)
    scan = [n for n in range(1, 400)
            if plan("minicpm-v-2_6", "3090", "0.6.3", "llm", {**given, "max_num_seqs": n}).verdict == "ok"]
    assert f.value == max(scan) < 399
    assert f.above.verdict != "ok"


def test_utilization_window_closed_above_by_the_free_memory_check():
    # V1 0.32 with max_model_len 32768 needs a high utilization for one request's KV but fails its free-memory
    # check at start above ~0.98: ok only in a window narrower than the 0.05 ladder
    given = {"max_num_seqs": 32}
    f = fit("gpu_memory_utilization", "minicpm-v-2_6", "3090", "0.32.0", "llm", given)
    verdicts = {round(i / 100, 2): plan("minicpm-v-2_6", "3090", "0.32.0", "llm",
                                        {**given, "gpu_memory_utilization": round(i / 100, 2)}).verdict
                for i in range(1, 101)}
    assert f.value == max(u for u, v in verdicts.items() if v == "ok")
    assert f.above.verdict == verdicts[round(f.value + 0.01, 2)] == "insufficient_free_memory"
    assert f.plans < 40


def test_domain_top_is_reported_not_searched_beyond():
    f = fit("max_model_len", "minicpm-v-2_6", "3090", "0.6.3", "llm",
            {"max_num_seqs": 32, "gpu_memory_utilization": 1.0})
    assert f.value == 32768 and f.above is None and "derived max_model_len (32768)" in f.top_reason
    assert f.to_json()["top_reason"].startswith("the model's")


def test_nothing_fits_says_why_at_the_bottom():
    f = fit("max_model_len", "minicpm-v-2_6", "t4", "0.32.0", "llm", {})
    assert f.value is None and f.at is None
    # the bottom is one image prompt (640-token item + 1, to the block), not one block: see the floor test below
    assert f.above.verdict == "oom_weights" and f.above.settings["max_model_len"] == 656


def test_max_model_len_fit_serves_one_image_prompt_when_images_are_on():
    """MiniCPM-V-2_6 on a 4090 used to answer 16 tokens: no image prompt fits there (vLLM 0.32
    v1/engine/input_processor.py:590 rejects a prompt longer than max_model_len)."""
    f = fit("max_model_len", "minicpm-v-2_6", "4090", "0.32.0", "llm", {})
    assert f.domain[0] == 656 and (f.value is None or f.value >= 656)
    assert "one largest image item is 640 tokens" in f.floor and f.to_json()["floor"] == f.floor
    text = fit("max_model_len", "minicpm-v-2_6", "4090", "0.32.0", "llm", {"limit_mm_per_prompt": {"image": 0}})
    assert text.domain[0] == 16 and text.floor is None


class _Fake:
    """A planner whose ok-ness is a function: for the search's handling of verdicts that are not monotone."""

    def __init__(self, ok):
        self._ok, self.calls = ok, 0

    def ok(self, setting, value):
        self.calls += 1
        return self._ok(value)


def test_not_monotone_takes_the_highest_ok_region_and_says_so():
    fake = _Fake(lambda v: v <= 100 or 1000 <= v <= 1500)
    value, turns = fitmod._ladder_bisect(fake, "max_num_seqs", 1, 4096, 1)
    assert value == 1500 and turns == [1024]


def test_monotone_boundary_found_to_the_step():
    fake = _Fake(lambda v: v <= 3000)
    value, turns = fitmod._ladder_bisect(fake, "max_model_len", 16, 32768, 16)
    assert value == 2992 and turns == [] and fake.calls < 25


def test_frontier_is_the_fit_per_ladder_value():
    points = frontier("max_model_len", "max_num_seqs", "minicpm-v-2_6", "3090", "0.6.3", ladder=(16, 128, 512))
    assert [v for v, _ in points] == [16, 128, 512]
    for v, f in points:
        assert f.value == fit("max_model_len", "minicpm-v-2_6", "3090", "0.6.3", "llm", {"max_num_seqs": v}).value
    assert points[0][1].value >= points[1][1].value >= points[2][1].value


def test_max_concurrency_is_kv_tokens_over_max_model_len():
    p = plan("minicpm-v-2_6", "3090", "0.6.3", "llm", {"max_model_len": 4096, "max_num_seqs": 32,
                                                      "gpu_memory_utilization": 1.0})
    assert max_concurrency(p) == round(p.kv_cache_tokens / 4096, 2) > 1


@pytest.mark.parametrize("setting, given, match", [
    ("max_slice_nums", {}, "unknown --fit setting 'max_slice_nums'; accepted: gpu_memory_utilization"),
    ("max_model_len", {"max_model_len": 4096}, "--fit max_model_len and --set max_model_len=... together"),
])
def test_bad_requests_are_usage_errors(setting, given, match):
    with pytest.raises(UsageError, match=match.replace("(", r"\(").replace(".", r"\.")):
        fit(setting, overrides=given)


def test_frontier_needs_two_settings():
    with pytest.raises(UsageError, match="two different settings"):
        frontier("max_model_len", "max_model_len")
    assert set(fitmod.FRONTIER_LADDERS) == set(FIT_SETTINGS)


def test_a_value_vllm_refuses_at_start_up_is_never_the_answer():                          # newcomer-3 defect 1
    from diagnostics.predict.fit import refusal

    f = fit("max_model_len", version="0.6.3", overrides={"max_num_batched_tokens": 2048, "max_num_seqs": 8})
    assert f.value == 2048 and refusal(f.at) is None  # V0 refuses max_num_batched_tokens < max_model_len
    assert "is smaller than max_model_len (2064)" in refusal(f.above)
    seqs = fit("max_num_seqs", version="0.6.3", overrides={"max_num_batched_tokens": 16, "max_model_len": 16})
    assert seqs.value == 16 and "must be greater than or equal to max_num_seqs (17)" in refusal(seqs.above)


def test_fit_uses_the_calibration_it_is_given():                                           # newcomer-3 defect 3
    from diagnostics.predict.coefficients import load_calibration_arg

    shipped = load_calibration_arg("shipped")
    plain = fit("max_model_len", card="3090", version="0.6.3")
    calibrated = fit("max_model_len", card="3090", version="0.6.3", coefficients=shipped)
    assert calibrated.at.coefficients.name != plain.at.coefficients.name and calibrated.value != plain.value
