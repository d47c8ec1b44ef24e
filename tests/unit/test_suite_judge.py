"""suite/judge.py: the outcome, the expectation, the limits and the verdict of one start (pure; no engine)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from diagnostics.suite.judge import classify, matches, plan_bounds


def start(**kw):
    base = dict(timed_out=False, returncode=0, signal=None, request=None)
    return SimpleNamespace(**{**base, **kw})


def test_classify_corrects_the_log_verdict_with_how_the_process_ended():
    log_ok, log_unknown = SimpleNamespace(outcome="ok"), SimpleNamespace(outcome="unknown")
    assert classify(start(), log_unknown) == "ok"
    assert classify(start(timed_out=True, returncode=None), log_ok) == "timeout"
    assert classify(start(returncode=-9, signal="SIGKILL"), log_unknown) == "crash"
    assert classify(start(returncode=1), log_unknown) == "error"
    assert classify(start(returncode=1), SimpleNamespace(outcome="kv_too_small")) == "kv_too_small"
    assert classify(start(request={"ok": False, "error": "boom"}), log_ok) == "error"


def test_matches_and_plan_bounds():
    assert matches("kv_too_small", "kv_too_small", "matrix")
    assert not matches("kv_too_small", "no_kv_cache", "matrix")
    assert matches("oom", "oom_profile", "matrix") and not matches("oom", "crash", "matrix")
    assert matches("oom_profile", "oom_kv_alloc", "estimator")
    term = SimpleNamespace
    plan = SimpleNamespace(peak_gib=20.5, components={
        "weights": term(value_gib=15.0, low_gib=14.5, high_gib=15.2),
        "activation_peak": term(value_gib=5.0, low_gib=4.0, high_gib=6.0),
        "kv_cache": term(value_gib=3.0, low_gib=0.0, high_gib=9.0)})  # KV comes after the peak: not counted
    assert plan_bounds(plan) == pytest.approx((19.0, 21.7))


# -- limits, expectation and the verdict on one start ---------------------------------------------------------
from diagnostics.cards import get_card
from diagnostics.logs.record import LogRecord
from diagnostics.suite.judge import Expectation, Limits, expect, judge, limits_for

GiB3090 = get_card("3090")
CPU = get_card("cpu")


def measured(**kw):
    base = dict(timed_out=False, returncode=0, signal=None, request=None, peak_device_gib=20.0,
                peak_process_gib=3.0, before_kv_peak_gib=15.0, phase_peaks_gib={}, log_path="/r/logs/x.log",
                baseline_device_gib=None, wall_s=30.0, sampler={"error": None, "readings": 3000, "interval_s": 0.01})
    return SimpleNamespace(**{**base, **kw})


def test_limits_follow_utilization_kv_bytes_and_the_matrix():
    limits = limits_for({}, GiB3090, {"gpu_memory_utilization": 0.8}, 15.0)
    assert limits == Limits(23.19, pytest.approx(0.8 * 23.69 + 1.0))
    kv = limits_for({}, GiB3090, {"kv_cache_memory_bytes": 2 << 30}, 15.0)
    assert kv.peak_gib == pytest.approx(15.0 + 2.0 + 1.0)  # measured profile peak + KV bytes + headroom
    own = limits_for({"3090": {"peak_gib": 21.0, "profile_peak_gib": 16.0}}, GiB3090, {}, 15.0)
    assert own == Limits(16.0, 21.0)
    # the cpu card asserts only what the matrix states for it
    assert limits_for({}, CPU, {"gpu_memory_utilization": 0.5}, 1.0) == Limits(None, None)
    assert limits_for({"cpu": {"peak_gib": 2.0}}, CPU, {}, 1.0) == Limits(None, 2.0)


def test_expectation_comes_from_the_matrix_first_and_never_for_cpu():
    combo = SimpleNamespace(expect="kv_too_small")
    assert expect(combo, GiB3090, None, "0.6.3", {}) == Expectation("kv_too_small", "matrix")
    unasserted = expect(SimpleNamespace(expect=None), CPU, None, "0.32.0", {})
    assert unasserted.outcome is None and "no CPU-backend model" in unasserted.basis
    unknown = expect(SimpleNamespace(expect=None), GiB3090, None, "0.6.3", {})
    assert unknown.outcome is None and "does not know this model" in unknown.basis


def test_verdict_statuses_reasons_and_failure_text():
    ok_log = LogRecord(outcome="ok", phase="unknown")
    passed = judge("a", GiB3090, measured(), ok_log, Expectation("ok", "matrix"), Limits(23.19, 22.32))
    assert (passed.status, passed.passed, passed.reasons) == ("passed", True, [])
    over = judge("a", GiB3090, measured(peak_device_gib=23.0), ok_log, Expectation("ok", "matrix"),
                 Limits(23.19, 22.32))
    assert over.status == "failed" and over.reasons == ["overall peak 23.00 GiB > 22.32 GiB allowed on 3090"]
    assert over.failure_text() == ("a on 3090: ok. Failed: overall peak 23.00 GiB > 22.32 GiB allowed on 3090. "
                                   "Log: /r/logs/x.log")
    small = LogRecord(outcome="kv_too_small", phase="kv_cache", error_line="ValueError: too small")
    xfail = judge("b", GiB3090, measured(returncode=1), small, Expectation("kv_too_small", "matrix"), Limits(None, None))
    assert xfail.status == "xfail" and "vLLM said: ValueError: too small" in xfail.failure_text()
    recorded = judge("c", GiB3090, measured(returncode=1), small, Expectation(None, "not asserted: x"),
                     Limits(None, None))
    assert recorded.status == "recorded" and recorded.notes == ["kv_too_small recorded, not asserted: x"]
    # a cpu start is judged on the process tree's peak; an unmeasured profile peak is a note, not a pass or fail
    cpu = judge("d", CPU, measured(before_kv_peak_gib=None, peak_process_gib=3.0), ok_log,
                Expectation(None, "not asserted"), Limits(1.0, 2.0))
    assert cpu.reasons == ["overall peak 3.00 GiB > 2.00 GiB allowed on cpu"]
    assert cpu.notes == ["profile-phase peak not known: the log marks no KV cache phase (limit 1.00 GiB)"]


# -- issue #16: the start's own increase, and a start that was not measured -----------------------------------

def test_overall_limit_gates_the_starts_own_increase_not_what_was_there_before():      # review F3
    ok_log = LogRecord(outcome="ok", phase="unknown")
    limits = limits_for({}, GiB3090, {"gpu_memory_utilization": 0.9}, 15.0)
    assert limits.peak_gib == pytest.approx(0.9 * 23.69 + 1.0)  # 22.32
    desktop = judge("a", GiB3090, measured(peak_device_gib=22.5, baseline_device_gib=1.2), ok_log,
                    Expectation("ok", "matrix"), limits)
    assert desktop.status == "passed"  # 21.3 GiB of its own: within the budget; the display's 1.2 GiB is apart
    greedy = judge("a", GiB3090, measured(peak_device_gib=23.5, baseline_device_gib=0.5), ok_log,
                   Expectation("ok", "matrix"), limits)
    assert greedy.status == "failed"
    assert "overall peak above the baseline (23.50 - 0.50 GiB) 23.00 GiB > 22.32 GiB" in greedy.reasons[0]


@pytest.mark.parametrize("sampler, wall, fragment", [
    ({"error": "NVMLError_Unknown: Unknown Error", "readings": 3, "interval_s": 0.01}, 30.0, "sampler stopped"),
    ({"error": None, "readings": 40, "interval_s": 0.01}, 30.0, "40 readings in 30.0 s"),
])
def test_a_start_whose_sampler_failed_is_not_a_pass(sampler, wall, fragment):          # review F4
    v = judge("a", GiB3090, measured(sampler=sampler, wall_s=wall), LogRecord(outcome="ok", phase="unknown"),
              Expectation("ok", "matrix"), Limits(23.19, 22.32))
    assert v.status == "failed" and any(fragment in r for r in v.reasons)


def test_an_unmeasured_overall_peak_is_a_reason_and_no_kv_marker_only_a_note():        # review F4, F6
    v = judge("a", GiB3090, measured(peak_device_gib=None, before_kv_peak_gib=None),
              LogRecord(outcome="ok", phase="unknown"), Expectation("ok", "matrix"), Limits(23.19, 22.32))
    assert v.status == "failed" and v.reasons == ["overall peak not measured (limit 22.32 GiB)"]
    assert any("marks no KV cache phase" in n for n in v.notes)


# -- a request that fails after the engine came up (issue 25) -----------------------------------------------------
from diagnostics.suite.judge import failed_request, settle_request_outcome

CPU_OOM = ("RuntimeError: Worker failed with error '[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
           "can't allocate memory: you tried to allocate 1046528 bytes. Error code 12 (Cannot allocate memory)'")
CASE = {"max_model_len": 4096, "prompt_tokens": 4080, "max_tokens": 16, "batch": 4, "items": [],
        "sampling": {"top_p": 0.9, "top_k": 50, "logprobs": 20, "seed": 0}}


def came_up(**kw):
    return measured(returncode=3, child={"engine_ready": True}, **kw)


def test_a_worst_case_request_that_ran_out_of_memory_is_oom_request_with_what_was_sent():
    worst = {"ok": False, "error": "EngineDeadError: EngineCore encountered an issue.", "sent": {"worst_case": CASE}}
    result = came_up(request={"ok": True}, worst_case=worst)
    log = LogRecord(outcome="oom_profile", phase="language_model", error_line=CPU_OOM)  # the forward pass's frames
    settle_request_outcome(result, log)
    assert (log.outcome, log.phase) == ("oom_request", "request")
    verdict = judge("mml4096", CPU, result, log, Expectation("ok", "matrix"), Limits(None, None))
    assert verdict.status == "failed" and verdict.outcome == "oom_request"
    assert verdict.reasons == ["expected ok (matrix), got oom_request in the request phase"]
    text = verdict.failure_text()
    assert "Sent after start-up: 4 x 4080-token prompt + 16 output tokens (max_model_len 4096)" in text


def test_a_request_error_that_is_not_memory_stays_an_error_and_a_start_that_failed_is_untouched():
    result = came_up(worst_case={"ok": False, "error": "ValueError: bad prompt", "sent": {"worst_case": CASE}})
    log = LogRecord(outcome="error", phase="request")
    settle_request_outcome(result, log)
    assert classify(result, log) == "error"
    # the OOM in the request's own error text is enough
    oom = came_up(worst_case={"ok": False, "error": CPU_OOM})
    log = LogRecord(outcome="unknown")
    settle_request_outcome(oom, log)
    assert log.outcome == "oom_request"
    # an engine that never came up: its OOM is the start's, not the request's
    never = measured(returncode=1, child={"engine_ready": False}, worst_case={"ok": False, "error": CPU_OOM})
    log = LogRecord(outcome="oom_profile", phase="language_model")
    settle_request_outcome(never, log)
    assert log.outcome == "oom_profile" and failed_request(measured()) is None


@pytest.mark.parametrize("version, default", [("0.6.3", 0.90), ("0.19.0", 0.90), ("0.32.0", 0.92), (None, 0.90),
                                              ("0.1.0", 0.90)])
def test_an_unknown_models_utilization_is_the_versions_default_not_a_literal(version, default):
    """One home for vLLM's default (settings.default_gpu_memory_utilization): the suite's limits said 0.9 for a model
    the estimator does not know even on V1 0.20+, where vLLM's default is 0.92 (three literal 0.9s disagreed)."""
    from diagnostics.suite.judge import default_utilization

    assert default_utilization(None, GiB3090, version, {}) == default


# -- the estimator's expectation (judge.expect's own branch): clear-cut ok, clear-cut failure, not clear-cut ----------
def _minicpmv():
    from diagnostics.models import get_model

    return get_model("minicpm-v-2_6")


def test_the_estimator_asserts_a_start_only_when_its_whole_range_is_on_one_side_of_the_card():
    """code review finding 3: with its clear-cut check deleted this file still passed; these cases fail then."""
    from diagnostics.predict.estimator import plan
    from diagnostics.suite.judge import plan_bounds

    model, open_combo = _minicpmv(), SimpleNamespace(expect=None)
    roomy = {"max_model_len": 4096, "max_num_seqs": 8, "gpu_memory_utilization": 0.9}
    ok = expect(open_combo, get_card("h100-80"), model, "0.6.3", roomy)
    low, high = plan_bounds(plan(model, get_card("h100-80"), "0.6.3", "llm", roomy))
    assert ok == Expectation("ok", "estimator") and high < get_card("h100-80").total_gib
    # the 16 GB weights alone do not fit a T4: every figure of the range is above the card
    t4 = get_card("t4")
    fails = expect(open_combo, t4, model, "0.6.3", {"max_model_len": 4096, "dtype": "float16"})
    assert fails.basis == "estimator" and fails.outcome in ("oom_weights", "oom_profile", "oom_kv_alloc",
                                                           "no_kv_cache", "kv_too_small")
    assert plan_bounds(plan(model, t4, "0.6.3", "llm", {"max_model_len": 4096, "dtype": "float16"}))[0] > t4.total_gib
    # the profile run at 32K x 256 sequences straddles a 3090: the estimator's range crosses the card, so no assertion
    edge = {"max_model_len": 32768, "max_num_seqs": 256}
    low, high = plan_bounds(plan(model, GiB3090, "0.6.3", "llm", edge))
    assert low <= GiB3090.total_gib <= high
    near = expect(open_combo, GiB3090, model, "0.6.3", edge)
    assert near.outcome is None and near.basis.startswith("not asserted: estimator says")
