"""plan() over 1,000 settings combinations (10 max_model_len x 10 max_num_seqs x 10 utilizations) per round.

Run with `pytest tests/benchmarks --benchmark-enable` to time it (the project's addopts disable benchmarks, then
the body runs once as a plain test). The rate is printed so it can go into the notes.
"""

from __future__ import annotations

import itertools
import time

from diagnostics.predict.estimator import plan
from diagnostics.outcomes import OUTCOMES

MAX_MODEL_LENS = [1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768]
MAX_NUM_SEQS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
UTILS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
COMBINATIONS = list(itertools.product(MAX_MODEL_LENS, MAX_NUM_SEQS, UTILS))


def plan_all(version: str, card: str) -> dict:
    verdicts: dict = {}
    for mml, seqs, util in COMBINATIONS:
        p = plan("minicpm-v-2_6", card, version, "llm",
                 {"max_model_len": mml, "max_num_seqs": seqs, "gpu_memory_utilization": util})
        verdicts[p.verdict] = verdicts.get(p.verdict, 0) + 1
    return verdicts


def test_plan_1000_combinations(benchmark):
    assert len(COMBINATIONS) == 1000
    t0 = time.perf_counter()
    verdicts = benchmark(plan_all, "0.6.3", "3090")
    elapsed = time.perf_counter() - t0
    assert sum(verdicts.values()) == 1000 and set(verdicts) <= set(OUTCOMES)
    assert verdicts.get("ok", 0) > 0 and verdicts.get("oom_profile", 0) > 0  # the grid spans the boundary
    stats = getattr(benchmark, "stats", None)
    mean = stats.stats.mean if stats else elapsed / max(getattr(benchmark, "rounds", 1) or 1, 1)
    print(f"\nplan(): 1,000 combinations in {mean:.3f} s per round -> {1000 / mean:,.0f} combinations/s; "
          f"verdicts {dict(sorted(verdicts.items()))}")
