"""report/terminal.py: the terminal summary table of a sweep."""

from __future__ import annotations

from diagnostics.report.terminal import summary_table


def result_line(rid, peak=1.5, outcome="ok", startup=20.0):
    """A complete results.jsonl record as a CPU-backend sweep writes it."""
    return {
        "schema_version": 1, "run": "20260101-000000", "id": rid, "scenario": rid, "model": "kit:tiny-text",
        "load_format": "dummy", "settings": {"max_model_len": 256},
        "card": {"name": "cpu", "total_gib": 20.0, "profile_threshold_gib": 0.0, "headroom_gib": 0.0},
        "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "gpu_total_gib": 20.0, "driver": None,
                         "cuda": None, "torch": "2.13.0+cpu", "vllm": "0.32.0", "python": "3.11.7",
                         "platform": "Linux"},
        "expected": "ok", "outcome": outcome, "phase": "unknown", "passed": True, "status": "passed",
        "reasons": [], "startup_s": startup, "wall_s": startup + 1, "returncode": 0, "signal": None,
        "timed_out": False, "peak_device_gib": None, "peak_process_gib": peak, "phase_peaks_gib": {},
        "torch_peak_gib": None, "vllm_numbers": {"kv_cache_tokens": 2048}, "kv_cache_gib": 0.06,
        "kv_cache_tokens": 2048, "weights_gib": None, "activation_peak_gib": None,
        "diagnosis": {"summary": "started", "culprits": []}, "request": None,
        "log_file": f"logs/{rid}.log", "timeline_file": f"timelines/{rid}.csv",
        "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:21Z",
    }


def test_summary_table_has_one_row_per_combination():
    table = summary_table([result_line("a"), result_line("b", outcome="kv_too_small")])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["id", "outcome", "expected"]
    assert len(lines) == 4 and lines[3].split()[:2] == ["b", "kv_too_small"]


def test_accuracy_table_counts_plans_right_verdicts_and_shows_each_error():
    from diagnostics.report.terminal import accuracy_table

    a, b, c = result_line("a"), result_line("b", outcome="kv_too_small"), result_line("c")
    a.update(prediction={"verdict": "ok"}, plan_verdict_right=True,
             accuracy=[{"figure": "kv_cache_tokens", "predicted": 2048, "actual": 2048, "source": "vllm", "error": 0.0}])
    b.update(prediction={"verdict": "ok"}, plan_verdict_right=False,
             accuracy=[{"figure": "weights_gib", "predicted": 1.1, "actual": 1.0, "source": "vllm", "error": 0.1}])
    c.update(prediction=None, plan_verdict_right=None, accuracy=[])
    text = accuracy_table([a, b, c])
    assert text.splitlines()[0] == "plan's verdict right for 1 of 2 starts"
    assert any(line.split()[:1] == ["b"] and "+10.0%" in line and "kv_too_small" in line for line in text.splitlines())
    assert accuracy_table([c]) == "no start was predicted by plan"


def test_spread_table_shows_min_median_max_of_repeated_combinations():                   # issue 25
    from diagnostics.report.terminal import spread_table

    sp = {"min": 2.0, "median": 2.1, "max": 2.2, "n": 2, "relative": 0.2 / 2.1}
    kv = {"min": 65536, "median": 65536, "max": 65536, "n": 2, "relative": 0.0}
    table = spread_table([{"id": "ok-256", "cache_state": "warm", "repeat": {"n": 2, "figures": {"peak": sp, "kv_tokens": kv}}},
                          {"id": "single"}])
    assert "ok-256" in table and "single" not in table
    assert "2.00 / 2.10 / 2.20 (9.5%)" in table and "65,536 / 65,536 / 65,536 (0.0%)" in table and "warm" in table
    assert spread_table([{"id": "single"}]) is None
