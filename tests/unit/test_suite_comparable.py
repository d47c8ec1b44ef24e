"""diagnostics.suite.comparable: the gate refuses (one line, exit 2) what it cannot compare like with like.

Each case is a newcomer-3 §5 defect 4 input that `compare` used to pass with "no regression" and exit 0."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from diagnostics.cli import main
from diagnostics.errors import UsageError
from diagnostics.suite.baseline import compare

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results" / "sweep-a10.jsonl"


def records() -> list[dict]:
    return [json.loads(line) for line in RESULTS.read_text().splitlines()]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def altered(**fields) -> list[dict]:
    rows = records()
    for r in rows:
        for key, value in fields.items():
            if isinstance(value, dict):
                r[key] = {**r[key], **value}
            else:
                r[key] = value
    return rows


def test_like_with_like_still_compares():
    assert compare(records(), copy.deepcopy(records())).regressed is False


@pytest.mark.parametrize("new, words", [
    (altered(model="Qwen/Qwen2-VL-7B-Instruct"), "differ in model (openbmb/MiniCPM-V-2_6 vs Qwen/Qwen2-VL-7B-Instruct)"),
    (altered(machine_info={"card": "3090", "gpu_name": "NVIDIA GeForce RTX 3090"}), "differ in card (a10 vs 3090)"),
    (altered(load_format="dummy"), "differ in load format (auto vs dummy)"),
    (altered(peak_device_gib=None), "differ in peak unit"),  # GPU device peaks against process-tree peaks
    (altered(peak_device_gib=None, peak_process_gib=None), "the candidate recorded no peak memory"),
    (altered(settings={"max_model_len": 1024}), "ran with other settings in the candidate"),
])
def test_unlike_runs_are_refused(new, words):
    with pytest.raises(UsageError, match=None) as err:
        compare(records(), new)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_an_empty_baseline_is_refused():
    with pytest.raises(UsageError, match="the baseline has no result records"):
        compare([], records())


def test_a_baseline_without_peaks_is_refused_too_and_peak_off_lets_both_pass():
    nopeaks = altered(peak_device_gib=None, peak_process_gib=None)
    with pytest.raises(UsageError, match="the baseline recorded no peak memory"):
        compare(nopeaks, records())
    assert compare(records(), nopeaks, {"peak": None}).regressed is False


@pytest.mark.parametrize("reverse", [False, True])
def test_a_duplicated_id_is_refused_whatever_the_line_order(reverse):
    failed = {**records()[0], "outcome": "oom_profile"}
    new = records() + [failed]
    if reverse:
        new = list(reversed(new))
    with pytest.raises(UsageError, match="the candidate has more than one record for mml2048-seqs16-util0.9"):
        compare(records(), new)
    with pytest.raises(UsageError, match="the baseline has more than one record"):
        compare(new, records())


def test_compare_command_refuses_in_one_line_with_exit_2(tmp_path, capsys):
    (tmp_path / "empty.json").write_text('{"schema_version":1,"name":"pinned","results":[]}')
    other = write(tmp_path / "other.jsonl", altered(model="Qwen/Qwen2-VL-7B-Instruct"))
    for old, new in ((tmp_path / "empty.json", RESULTS), (RESULTS, other)):
        assert main(["compare", str(old), str(new)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
