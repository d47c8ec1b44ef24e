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


# -- issue #9 (through the command line, in a subprocess: exit codes and one-line errors) -------------------------
I9_ROOT = Path(__file__).resolve().parents[2]


def i9_cli(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diagnostics", *map(str, args)], capture_output=True, cwd=I9_ROOT,
                          input=stdin, timeout=120)


def usage_line(proc) -> str:
    """The one stderr line of a usage error (exit 2), and nothing else."""
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err, proc.stdout.decode())
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# -- compare fails on an incomplete candidate, warns on a truncated line, names both versions --------------------------
def gate_record(rid: str, vllm: str, peak: float = 1.25) -> dict:
    return {"id": rid, "outcome": "ok", "peak_process_gib": peak, "kv_cache_tokens": 131072, "startup_s": 1.5,
            "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "driver": None, "vllm": vllm}}


def write_lines(path: Path, records, tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def test_compare_fails_when_the_candidate_misses_combinations(tmp_path):
    old = write_lines(tmp_path / "old.jsonl", [gate_record(r, "0.31.0") for r in "abc"])
    new = write_lines(tmp_path / "new.jsonl", [gate_record("a", "0.32.0")])
    proc = i9_cli("compare", old, new)
    out = proc.stdout.decode()
    assert proc.returncode == 1, out
    assert "2 combinations of the baseline are missing from the candidate: b, c" in out


def test_compare_warns_on_a_truncated_last_line(tmp_path):
    old = write_lines(tmp_path / "old.jsonl", [gate_record(r, "0.31.0") for r in "ab"])
    new = write_lines(tmp_path / "new.jsonl", [gate_record("a", "0.32.0")], 
                      tail=json.dumps(gate_record("b", "0.32.0"))[:30])
    proc = i9_cli("compare", old, new)
    text = proc.stdout.decode() + proc.stderr.decode()
    assert f"{new}:2: truncated last line" in text
    assert proc.returncode == 1  # b is then missing


def test_compare_names_both_vllm_versions_and_notes_the_same_file(tmp_path):
    old = write_lines(tmp_path / "old.jsonl", [gate_record(r, "0.31.0") for r in "ab"])
    new = write_lines(tmp_path / "new.jsonl", [gate_record(r, "0.32.0") for r in "ab"])
    proc = i9_cli("compare", old, new)
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "baseline: vLLM 0.31.0" in out and "candidate: vLLM 0.32.0" in out
    same = i9_cli("compare", old, old)
    assert same.returncode == 0 and "both inputs are the same file" in same.stdout.decode()
