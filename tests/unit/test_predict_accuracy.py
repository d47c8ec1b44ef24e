"""predict/accuracy.py: plan's figures under the log reader's keys, and the error beside printed/measured ones."""

from __future__ import annotations

from diagnostics.predict.accuracy import Comparison, compare, predicted_figures, prediction_record, verdict_right
from diagnostics.predict.estimator import plan


def test_predicted_figures_use_the_log_readers_keys():
    p = plan("minicpm-v-2_6", "3090", "0.6.3", "llm", {"max_model_len": 4096, "max_num_seqs": 32,
                                                        "gpu_memory_utilization": 1.0})
    f = predicted_figures(p)
    assert f["weights_gib"] == p.components["weights"].value_gib and f["kv_cache_tokens"] == p.kv_cache_tokens
    assert f["peak_torch_gib"] == f["weights_gib"] + f["activation_peak_gib"]
    rec = prediction_record(p)
    assert rec["verdict"] == p.verdict and rec["parts"]["llm_pass_raw_bytes"] > 0 and rec["coefficients"] == "built-in"


def test_compare_keeps_only_numbers_both_sides_have():
    rows = compare({"weights_gib": 15.0, "kv_cache_tokens": 1000, "peak_gib": 20.0},
                   {"weights_gib": 15.5, "kv_cache_tokens": "418.00 MiB", "non_torch_gib": 0.2}, {"peak_gib": 21.0})
    assert [(c.figure, c.source) for c in rows] == [("weights_gib", "vllm"), ("peak_gib", "measured")]
    assert abs(rows[0].error - (15.0 - 15.5) / 15.5) < 1e-12
    assert Comparison("x", 1.0, 0.0, "vllm").error is None


def test_verdict_right_needs_both_sides():
    assert verdict_right("ok", "ok") is True and verdict_right("ok", "oom_profile") is False
    assert verdict_right(None, "ok") is None and verdict_right("ok", "unknown") is None
