"""diagnostics.explain.terms: the terms a change moves, and which way utilization cures a failure."""

from __future__ import annotations

from diagnostics.explain.terms import failing_term, margin, term, util_direction
from diagnostics.predict import estimator


def test_terms_and_margins_read_off_a_plan():
    p = estimator.plan("minicpm-v-2_6", "3090", "0.6.3", "llm", overrides={})
    assert term(p, "weights") == p.components["weights"].value_gib and term(p, "no_such_term") == 0.0
    assert margin(p, "oom_profile") == -p.peak_gib and margin(p, "no_kv_cache") == term(p, "kv_cache")
    assert failing_term("oom_profile", "vision_encoder") == "encoder_profile"
    assert failing_term("oom_profile", "sampler") == "activation_peak" and failing_term("no_kv_cache", None) == "kv_cache"


def test_utilization_direction_follows_the_failure_and_engine():
    assert util_direction("no_kv_cache", "V1") == 1
    assert util_direction("kv_too_small", "V0") == 1
    assert util_direction("oom_profile", "V0") == 0
    assert util_direction("oom_cuda_graph", "V0") == -1
    assert util_direction("oom_warmup", "V0") == -1
    assert util_direction("oom_warmup", "V1") == 0  # V1's sampler warm-up is in the profile
    assert util_direction("insufficient_free_memory", "V1") == -1
