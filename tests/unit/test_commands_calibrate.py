"""`python -m diagnostics calibrate`: field-case inputs, a log file, bad input as one line with exit 2; and the
calibration it writes changes what `plan --calibration` and `explain --calibration` print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.cli import main

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "tests" / "data" / "calibration" / "field-inputs.toml"


def test_calibrate_field_inputs_prints_and_writes(tmp_path, capsys):
    out_toml, doc = tmp_path / "c.toml", tmp_path / "a.md"
    assert main(["calibrate", str(INPUTS), "--out", str(out_toml), "--markdown", str(doc)]) == 0
    out = capsys.readouterr().out
    assert "llm_activation_scale" in out and "leave-one-out" in out and "vllm#15815" in out
    assert "[coefficients]" in out_toml.read_text() and "## Per case" in doc.read_text()


def test_plan_with_the_calibration_changes_the_activation(tmp_path, capsys):
    argv = ["plan", "--model", str(ROOT / "tests/data/calibration/models/qwen2.5-32b-instruct"), "--card", "l40s",
            "--vllm", "0.7.3", "--set", "tensor_parallel_size=2", "--set", "max_model_len=10000", "--json"]
    assert main(argv) == 0
    before = json.loads(capsys.readouterr().out)["components"]["activation_peak_gib"]
    assert main(argv + ["--calibration", "shipped"]) == 0
    after = json.loads(capsys.readouterr().out)["components"]["activation_peak_gib"]
    assert abs(after - 1.26) < 0.02 < abs(before - 1.26)  # vLLM printed 1.26 GiB for these settings (#15815)


def test_explain_shows_vllms_figure_plans_figure_and_the_error(capsys):
    log = ROOT / "tests" / "data" / "logs" / "gpu_v1_new_breakdown_ok.log"
    assert main(["explain", str(log), "--card", "3090", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    weights = next(c for c in data["prediction"] if c["figure"] == "weights_gib")
    assert weights["actual"] == 15.1 and abs(weights["error"]) < 0.01
    assert main(["explain", str(log)]) == 0  # model and card from the log (MiniCPM-V-2_6, 23.56 GiB total: 3090)
    assert "vLLM's figure vs plan's:\n  weights_gib: vLLM 15.10 GiB, plan 15.09 GiB (-0.0%)" in capsys.readouterr().out
    assert main(["explain", str(ROOT / "tests" / "data" / "logs" / "cpu_explicit_ok.log"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prediction"] == []  # CPU backend: no device plan


@pytest.mark.parametrize("argv, words", [
    (["calibrate", "/nonexistent/x.log"], "does not exist"),
    (["calibrate", str(ROOT / "tests/data/logs/gpu_v1_new_breakdown_ok.log")], "needs --model and --card"),
    (["plan", "--calibration", "/nonexistent.toml"], "cannot read it"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_coefficient_names_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[coefficients]\nnot_a_field = 1\n")
    assert main(["plan", "--calibration", str(bad)]) == 2
    assert "unknown coefficient 'not_a_field'" in capsys.readouterr().err


@pytest.mark.parametrize("option, path, says", [
    ("--out", "/proc/version/c.toml", "its directory does not exist"),
    ("--markdown", "/tmp", "is a directory"),
])
def test_an_unwritable_output_is_refused_before_the_fit(option, path, says, capsys):
    """It printed the whole fit, then a NotADirectoryError traceback (a newcomer's bad input, #9)."""
    from diagnostics.cli import main

    log = str(Path(__file__).resolve().parents[1] / "data" / "logs" / "gpu_v063_profile_vision_oom.log")
    assert main(["calibrate", log, "--model", "minicpm-v-2_6", "--card", "3090", option, path]) == 2
    captured = capsys.readouterr()
    assert f"{option} {path!r}: {says}" in captured.err and "coefficient" not in captured.out


def test_one_source_twice_is_refused_and_a_results_file_by_any_name_is_results(capsys):     # newcomer-3 #324, #362
    assert main(["calibrate", str(INPUTS), str(INPUTS)]) == 2
    assert "is " + str(INPUTS) + " again; accepted: each source once" in capsys.readouterr().err
    main(["calibrate", str(ROOT / "tests" / "data" / "results" / "sweep-a10.jsonl")])
    assert "needs --model and --card and --vllm" not in capsys.readouterr().err  # not taken for a log


def test_a_log_whose_settings_vllm_refuses_for_the_model_is_not_fitted(tmp_path, capsys):     # newcomer-3 #320
    log = tmp_path / "kv.log"  # vllm#6124 (Phi-3-vision, max_model_len 131072), named as MiniCPM-V-2_6 (32K)
    log.write_text("INFO 07-04 01:04:14 gpu_executor.py:84] # GPU blocks: 5970, # CPU blocks: 682\n[rank0]: "
                   "ValueError: The model's max seq len (131072) is larger than the maximum number of tokens that can "
                   "be stored in KV cache (95520). Try increasing `gpu_memory_utilization` or decreasing "
                   "`max_model_len` when initializing the engine.\n")
    assert main(["calibrate", str(log), "--model", "minicpm-v-2_6", "--card", "3090", "--vllm", "0.6.3"]) == 2
    assert "settings are ones vLLM refuses for openbmb/MiniCPM-V-2_6" in capsys.readouterr().err
