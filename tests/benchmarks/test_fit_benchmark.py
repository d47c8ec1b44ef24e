"""`plan --fit` and the 18-card x every-version table, timed (issue #14 targets: a fit under 50 ms of compute,
all cards x all known versions under 1 s).

Run with `pytest tests/benchmarks --benchmark-enable` to time them (the project's addopts disable benchmarks;
then each body runs once as a plain test). The figures are printed for the notes.
"""

from __future__ import annotations

import time

from diagnostics.predict.fit import fit, frontier
from diagnostics.predict.fleet import expand_cards, expand_versions, fleet

SETTINGS = {"max_model_len": 8192, "max_num_seqs": 16}


def _mean(benchmark, elapsed: float) -> float:
    stats = getattr(benchmark, "stats", None)
    return stats.stats.mean if stats else elapsed


def test_fit_max_model_len(benchmark):
    t0 = time.perf_counter()
    f = benchmark(fit, "max_model_len", "minicpm-v-2_6", "3090", "0.32.0", "llm", {"max_num_seqs": 32})
    mean = _mean(benchmark, time.perf_counter() - t0)
    assert f.at.verdict == "ok" and f.above.verdict != "ok"
    print(f"\nplan --fit max_model_len (0.32.0, 3090): {mean * 1000:.1f} ms, {f.plans} plans")


def test_fit_utilization(benchmark):
    t0 = time.perf_counter()
    f = benchmark(fit, "gpu_memory_utilization", "minicpm-v-2_6", "3090", "0.32.0", "llm", {"max_num_seqs": 32})
    mean = _mean(benchmark, time.perf_counter() - t0)
    assert f.value is not None
    print(f"\nplan --fit gpu_memory_utilization (0.32.0, 3090): {mean * 1000:.1f} ms, {f.plans} plans")


def test_frontier(benchmark):
    t0 = time.perf_counter()
    points = benchmark(frontier, "max_model_len", "max_num_seqs", "minicpm-v-2_6", "3090", "0.32.0")
    mean = _mean(benchmark, time.perf_counter() - t0)
    assert len(points) == 11
    print(f"\nplan --fit max_model_len,max_num_seqs (11 ladder values): {mean * 1000:.1f} ms")


def test_all_cards_all_versions(benchmark):
    cards, versions = expand_cards("all"), expand_versions("all")
    t0 = time.perf_counter()
    rows = benchmark(fleet, "minicpm-v-2_6", cards, versions, "llm", SETTINGS)
    mean = _mean(benchmark, time.perf_counter() - t0)
    assert len(rows) == len(cards) * len(versions) == 19 * len(versions)
    # a row vLLM refuses at start-up, or a release without the model (plain plan's refusals, issue 26), has no
    # plan and says why
    assert all((r.plan is None) == (r.error is not None) for r in rows)
    assert {r.plan.verdict for r in rows if r.plan is not None} >= {"ok", "oom_weights"}
    print(f"\nplan --card all --vllm all: {len(rows)} plans in {mean * 1000:.0f} ms")
