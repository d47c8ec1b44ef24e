"""report/benchmark.py and `report RUN_DIR --format benchmark`: github-action-benchmark's custom JSON.

The action (benchmark-action/github-action-benchmark, src/extract.ts `extractCustomBenchmarkResult`) reads a JSON
array of {name: string, value: number, unit: string, range?: string, extra?: string}; one file per tool."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from diagnostics.cli import main
from diagnostics.report.benchmark import BIGGER_NAME, SMALLER_NAME, benchmark_entries

SWEEP = Path(__file__).resolve().parents[1] / "data" / "results"


@pytest.fixture
def run_dir(tmp_path):
    target = tmp_path / "run"
    shutil.copytree(SWEEP, target)
    (target / "sweep-a10.jsonl").rename(target / "results.jsonl")
    return target


def _records(path: Path) -> dict:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_report_format_benchmark_writes_the_two_files_the_action_reads(run_dir, capsys):
    assert main(["report", str(run_dir), "--format", "benchmark"]) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == [SMALLER_NAME, BIGGER_NAME]
    smaller = json.loads((run_dir / SMALLER_NAME).read_text())
    bigger = json.loads((run_dir / BIGGER_NAME).read_text())
    for entries in (smaller, bigger):
        assert isinstance(entries, list) and entries
        for e in entries:
            assert set(e) <= {"name", "value", "unit", "range", "extra"}
            assert isinstance(e["name"], str) and isinstance(e["unit"], str) and isinstance(e["extra"], str)
            assert isinstance(e["value"], (int, float)) and not isinstance(e["value"], bool)
        assert len({e["name"] for e in entries}) == len(entries)  # a name is one chart series
    records = _records(run_dir / "results.jsonl")
    by_name = {e["name"]: e for e in smaller + bigger}
    # the two starts that came up, each figure as recorded; the card in the name, vLLM on the point
    assert by_name["MiniCPM-V-2_6 mml2048-seqs16-util0.9 peak (device) [a10]"]["value"] == 20.4
    assert by_name["MiniCPM-V-2_6 mml4096-seqs32-util0.9 start-up time [a10]"] == {
        "name": "MiniCPM-V-2_6 mml4096-seqs32-util0.9 start-up time [a10]", "unit": "s",
        "value": records["mml4096-seqs32-util0.9"]["startup_s"], "extra": "vLLM 0.6.3; driver 550.54.15; run fixture-a10"}
    assert by_name["MiniCPM-V-2_6 mml2048-seqs16-util0.9 KV cache tokens [a10]"]["value"] == 48320
    assert by_name["MiniCPM-V-2_6 mml2048-seqs16-util0.9 profile-run peak [a10]"]["value"] == 16.9
    # a start that failed (oom_profile, kv_too_small) is no point on a chart of start-up memory
    assert not [n for n in by_name if "seqs256" in n or "mml8192" in n]


def test_all_keeps_meaning_the_paste_ready_reports(run_dir, capsys):
    assert main(["report", str(run_dir), "--format", "md"]) == 0
    assert not (run_dir / SMALLER_NAME).exists()
    assert main(["report", str(run_dir), "--format", "nope"]) == 2
    assert "benchmark" in capsys.readouterr().err


def test_unmeasured_or_non_finite_figures_are_left_out_not_charted_as_zero():
    report = {"environment": {"model": "org/m", "vllm": "0.32.0"}, "card": {"name": "cpu"}, "run": "r",
              "combinations": [{"id": "a", "outcome": "ok", "peak_device_gib": None, "peak_process_gib": 1.5,
                                "profile_peak_gib": float("nan"), "startup_s": True, "kv_cache_tokens": 896}]}
    smaller, bigger = benchmark_entries(report)
    assert [e["name"] for e in smaller] == ["m a peak (process) [cpu]"]
    assert bigger == [{"name": "m a KV cache tokens [cpu]", "unit": "tokens", "value": 896,
                       "extra": "vLLM 0.32.0; driver -; run r"}]
