"""predict/verdict.py: vLLM's checks in the order it runs them; each outcome reached by a constructed case."""

from __future__ import annotations

import dataclasses

from diagnostics.cards import get_card
from diagnostics.predict.terms import KVCache, Term
from diagnostics.predict.verdict import StartupTerms, verdict
from diagnostics.versions import Version

CARD = get_card("3090")  # 23.69 GiB
S = {"gpu_memory_utilization": 0.9, "max_model_len": 4096, "kv_cache_memory_bytes": None,
     "num_gpu_blocks_override": None}


def terms(**kw) -> StartupTerms:
    base = StartupTerms(weights=Term.exact(15.0), non_torch=Term(0.3, 0.1, 0.6, "e"),
                        activation=Term(2.0, 1.5, 2.5, "e"), kv=KVCache(Term.exact(3.0), 3.0, 1000, 16000),
                        graphs=Term(0.5, 0.25, 1.0, "e"), graphs_budgeted=False, encoder_gib=2.0, llm_gib=1.0,
                        sampler_gib=0.1, peak_gib=17.6, cuda_context_gib=0.3)
    return dataclasses.replace(base, **kw)


def test_ok():
    assert verdict(CARD, Version(0, 6, 3), "V0", S, terms(), []) == ("ok", None)


def test_each_check_in_order():
    v = Version(0, 6, 3)
    assert verdict(CARD, v, "V0", S, terms(weights=Term.exact(24.0)), []) == ("oom_weights", "weights")
    assert verdict(CARD, v, "V0", S, terms(peak_gib=30.0), []) == ("oom_profile", "vision_encoder")
    assert verdict(CARD, v, "V0", S, terms(peak_gib=30.0, encoder_gib=0.5, llm_gib=3.0, sampler_gib=2.0),
                   []) == ("oom_profile", "sampler")
    assert verdict(CARD, v, "V0", S, terms(kv=KVCache(Term.exact(0.0), -1.0, 0, 0)), []) == ("no_kv_cache", "kv_cache")
    assert verdict(CARD, v, "V0", S, terms(kv=KVCache(Term.exact(0.1), 0.1, 10, 160)), []) == ("kv_too_small",
                                                                                                "kv_cache")
    assert verdict(CARD, v, "V0", S, terms(kv=KVCache(Term.exact(9.0), 9.0, 9000, 144000)), []) == (
        "oom_kv_alloc", "kv_cache")
    assert verdict(CARD, v, "V0", S, terms(kv=KVCache(Term.exact(7.9), 7.9, 9000, 144000)), []) == (
        "oom_cuda_graph", "cuda_graph")


def test_v1_free_memory_check_comes_first_and_leaves_a_note():
    notes: list[str] = []
    out = verdict(CARD, Version(0, 10, 1), "V1", {**S, "gpu_memory_utilization": 1.0}, terms(), notes)
    assert out == ("insufficient_free_memory", "startup_check")
    assert "23.69 GiB up front" in notes[0]
    # before 0.9.1 there was no such check
    assert verdict(CARD, Version(0, 9, 0), "V1", {**S, "gpu_memory_utilization": 1.0}, terms(), [])[0] != \
        "insufficient_free_memory"


def test_unknown_total_checks_only_a_fixed_pool():
    cpu = dataclasses.replace(CARD, total_gib=0.0)
    assert verdict(cpu, Version(0, 32, 0), "V1", S, terms(), []) == ("unknown", None)
    fixed = {**S, "kv_cache_memory_bytes": 1 << 30}
    assert verdict(cpu, Version(0, 32, 0), "V1", fixed, terms(), []) == ("ok", None)


def test_the_one_request_check_holds_back_the_null_block_from_0_29():
    """A pool of exactly max_model_len tokens: 0.28 starts it; from 0.29 vLLM plans against the pool less the null
    block (kv_cache_utils.py 0.29.0:2316-2321, 0.32.0:2627-2633), so one max_model_len request no longer fits."""
    s = {**S, "block_size": 16}
    exact = terms(kv=KVCache(Term.exact(3.0), 3.0, 256, 4096))
    assert verdict(CARD, Version(0, 28, 0), "V1", s, exact, [])[0] == "ok"
    assert verdict(CARD, Version(0, 29, 0), "V1", s, exact, []) == ("kv_too_small", "kv_cache")
    assert verdict(CARD, Version(0, 32, 0), "V1", s, terms(kv=KVCache(Term.exact(3.0), 3.0, 257, 4112)), [])[0] == "ok"
