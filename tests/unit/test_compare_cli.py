"""`python -m diagnostics compare OLD NEW`: exit 0 (no regression), 1 (regression), 2 (unreadable input)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from diagnostics.suite.baseline import save_baseline

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results" / "sweep-a10.jsonl"


def compare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diagnostics", "compare", *map(str, args)],
                          capture_output=True, text=True)


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def records() -> list[dict]:
    return [json.loads(line) for line in RESULTS.read_text().splitlines()]


def test_equal_results_pass(tmp_path):
    copy = write(tmp_path / "copy.jsonl", records())
    done = compare(RESULTS, copy)
    assert done.returncode == 0, done.stderr
    assert "no regression: 4 same" in done.stdout


def test_planted_regression_fails(tmp_path):
    new = records()
    new[1]["peak_device_gib"] = 21.6  # +5.4% > 5%
    new[0].update(outcome="oom_profile", startup_s=None, kv_cache_tokens=None)
    done = compare(RESULTS, write(tmp_path / "new.jsonl", new))
    assert done.returncode == 1
    assert "REGRESSION: 2 regressed, 2 same" in done.stdout
    assert "start failed: ok -> oom_profile" in done.stdout
    assert "peak memory 20.50 -> 21.60 GiB (+5.4%)" in done.stdout
    # a looser tolerance lets the peak through; the failed start still regresses
    looser = compare(RESULTS, tmp_path / "new.jsonl", "--fail-on-regression", "peak:10%")
    assert looser.returncode == 1 and "REGRESSION: 1 regressed" in looser.stdout


def test_run_dir_and_saved_baseline_are_accepted(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write(run / "results.jsonl", records())
    baseline = save_baseline(records(), "pinned", tmp_path / "baselines")
    done = compare(baseline, run, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["regressed"] is False and len(doc["rows"]) == 4


def test_unreadable_input_exits_2(tmp_path):
    missing = compare(RESULTS, tmp_path / "nope.jsonl")
    assert missing.returncode == 2 and "no such results file" in missing.stderr
    (tmp_path / "junk.jsonl").write_text("not json\nnot json either\n")
    junk = compare(tmp_path / "junk.jsonl", RESULTS)
    assert junk.returncode == 2 and "not a result record" in junk.stderr
    (tmp_path / "other.jsonl").write_text('{"hello": "world"}\n')
    other = compare(RESULTS, tmp_path / "other.jsonl")
    assert other.returncode == 2 and "no result records" in other.stderr
    bad_spec = compare(RESULTS, RESULTS, "--fail-on-regression", "memory:5%")
    assert bad_spec.returncode == 2 and "accepted: KEY:N% with KEY one of peak, kv_tokens, startup" in bad_spec.stderr
