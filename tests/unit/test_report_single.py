"""report/single.py: the content of one log's and one prediction's report (the layout is in test_report_markdown)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.explain import explain_plan
from diagnostics.logs.reader import read_log
from diagnostics.predict.estimator import plan
from diagnostics.redact import Redactor
from diagnostics.report.single import (FIGURES, check_fix, figure_rows, fit_rows, log_report, plan_report,
                                       replan_command)

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


def _answer(record, **kw):
    from diagnostics.commands.explain import explain

    return explain(record, **kw)


def test_figure_rows_put_the_printed_figure_beside_the_prediction_with_the_difference():
    p = plan("minicpm-v-2_6", "3090", "0.6.3", overrides={"max_model_len": 4096, "max_num_seqs": 32})
    rows = {r["figure"]: r for r in figure_rows({"weights_gib": 15.1, "kv_cache_tokens": 10000}, p)}
    w = rows["weights_gib"]
    assert w["printed"] == 15.1 and w["predicted"] == pytest.approx(p.components["weights"].value_gib)
    assert w["difference"] == pytest.approx(p.components["weights"].value_gib - 15.1)
    assert w["ratio"] == pytest.approx(w["difference"] / 15.1)
    kv = rows["kv_cache_tokens"]
    assert (kv["printed"], kv["predicted"], kv["difference"]) == (10000, p.kv_cache_tokens, p.kv_cache_tokens - 10000)
    # a figure only plan knows has no difference; one neither knows has no row
    assert rows["activation_peak_gib"]["printed"] is None and rows["activation_peak_gib"]["difference"] is None
    assert [r["figure"] for r in figure_rows({"weights_gib": 1.0}, None)] == ["weights_gib"]
    assert figure_rows({"weights_gib": True, "other": 3}, None) == []  # a bool is not a figure
    assert {k for k, _ in FIGURES} >= set(rows)


def test_check_fix_replans_with_the_fix_on_top_of_what_was_set():
    p = plan("minicpm-v-2_6", "3090", "0.6.3", overrides={"max_model_len": 32768})
    assert p.verdict != "ok"
    fix = explain_plan(p).fix
    check = check_fix(p, fix)
    again = plan("minicpm-v-2_6", "3090", "0.6.3", overrides={"max_model_len": 32768, **fix})
    assert check == {"verdict": again.verdict, "peak_gib": again.peak_gib, "kv_cache_tokens": again.kv_cache_tokens,
                     "phase": again.failing_phase}
    assert check["verdict"] == "ok"
    assert check_fix(p, {}) is None and check_fix(None, fix) is None
    assert check_fix(p, {"max_num_seqs": 0}) is None  # the planner refuses it: no claim


def test_replan_command_is_plan_with_the_overrides_and_the_fix():
    p = plan("minicpm-v-2_6", "a10", "0.6.3", overrides={"max_model_len": 32768})
    cmd = replan_command(p, {"limit_mm_per_prompt": {"image": 1}})
    assert cmd.startswith("python -m diagnostics plan --model openbmb/MiniCPM-V-2_6 --card a10 --vllm 0.6.3 ")
    assert "--set max_model_len=32768 --set 'limit_mm_per_prompt={\"image\": 1}'" in cmd
    assert replan_command(p, {}) is None and replan_command(None, {"max_num_seqs": 1}) is None


def test_log_report_of_a_profile_oom_says_outcome_phase_culprit_and_whether_the_fix_starts():
    record = read_log((LOGS / "gpu_v063_profile_vision_oom.log").read_text())
    answer = _answer(record)
    content = log_report(record, answer, redactor=Redactor())
    v = content["verdict"]
    assert "vLLM 0.6.3 (V0) stopped with oom_profile in the vision encoder phase" in v
    first = next(c for c in answer["culprits"] if c["setting"] in answer["fix"])
    assert f"The setting that caused it: {first['setting']}=" in v
    fix = ", ".join(f"{k}={val}" for k, val in answer["fix"].items())
    assert f"Fix: set {fix}" in v
    p = plan("minicpm-v-2_6", "3090", "0.6.3", overrides={**_echoed(record), **answer["fix"]})
    assert content["fix_check"]["verdict"] == p.verdict
    assert ("plan predicts it starts" in v) == (p.verdict == "ok")
    weights = next(r for r in content["figures"] if r["figure"] == "weights_gib")
    assert weights["printed"] == 15.1 and weights["predicted"] == pytest.approx(15.09, abs=0.01)
    assert content["prediction_gap"] is None
    assert ["card for the prediction", "3090: NVIDIA GeForce RTX 3090 (23.69 GiB); nearest built-in card to that "
            "total"] in content["environment"]
    assert content["error_line"].startswith("[rank0]: torch.OutOfMemoryError")
    assert content["evidence"] and content["error_line"] not in content["evidence"]


def _echoed(record):
    from diagnostics.explain.context import record_card, record_model, record_plan, record_version

    p = record_plan(record, record_model(record, None), record_card(record, None), record_version(record))
    return dict(p.overrides)


def test_log_report_without_a_known_model_says_how_to_get_the_prediction():
    record = read_log("INFO Loading weights took 15.10 GB\n")
    content = log_report(record, _answer(record), redactor=Redactor())
    assert "--model" in content["prediction_gap"]
    assert all(r["predicted"] is None for r in content["figures"])
    content = log_report(record, _answer(record, model="minicpm-v-2_6"), model="minicpm-v-2_6", redactor=Redactor())
    assert "--card" in content["prediction_gap"]
    content = log_report(record, _answer(record, model="minicpm-v-2_6", card="a10"), model="minicpm-v-2_6",
                         card="a10", redactor=Redactor())
    assert content["prediction_gap"] is None
    assert ["card for the prediction", "a10: NVIDIA A10 (22.18 GiB); --card"] in content["environment"]


def test_plan_report_verdict_fix_check_and_the_fit_hook():
    p = plan("minicpm-v-2_6", "3090", "0.6.3", overrides={"max_model_len": 32768})
    e = explain_plan(p)
    content = plan_report(p, e, redactor=Redactor())
    assert content["verdict"].startswith(f"plan predicts openbmb/MiniCPM-V-2_6 on NVIDIA GeForce RTX 3090 (23.69 GiB), "
                                         f"vLLM 0.6.3 (V0) fails with {p.verdict}")
    assert "plan predicts it starts" in content["verdict"]  # check_fix above: this fix re-plans to ok
    assert content["fits"] is None
    assert [r["figure"] for r in content["figures"]][:3] == ["gpu_total_gib", "weights_gib", "activation_peak_gib"]
    ok = plan("minicpm-v-2_6", "3090", "0.6.3", overrides={"max_model_len": 4096})
    rows = fit_rows(p, [ok])
    assert rows == [{"settings": {k: v for k, v in ok.settings.items() if p.settings.get(k) != v},
                     "verdict": "ok", "peak_gib": ok.peak_gib, "kv_cache_tokens": ok.kv_cache_tokens}]
    assert rows[0]["settings"]["max_model_len"] == 4096
    assert plan_report(p, e, fits=[], redactor=Redactor())["fits"] == []
    ok_content = plan_report(ok, explain_plan(ok), redactor=Redactor())
    assert "starts: peak" in ok_content["verdict"] and "Fix" not in ok_content["verdict"]


def test_culprits_without_a_suggestion_are_named_as_drivers_not_as_the_cause():
    record = read_log("INFO Loading weights took 15.10 GB\n")
    answer = {"culprits": [{"setting": "max_num_seqs", "value": None, "suggested": None, "why": "w"},
                           {"setting": "max_num_batched_tokens", "value": 8192, "suggested": None, "why": "w"}],
              "summary": "s", "fix": {}}
    v = log_report(record, answer, redactor=Redactor())["verdict"]
    assert "caused it" not in v
    assert "Settings that drive it: max_num_seqs, max_num_batched_tokens (the log prints no figures" in v
    answer["culprits"].append({"setting": "max_model_len", "value": 32768, "suggested": 4096, "why": "w"})
    assert "The setting that caused it: max_model_len=32768." in log_report(record, answer,
                                                                             redactor=Redactor())["verdict"]


def test_log_report_shows_how_far_the_start_got_and_the_processes_the_oom_message_lists():
    import json

    cases = Path(__file__).resolve().parents[1] / "data" / "field_cases" / "cases-2.jsonl"
    log = next(json.loads(x)["log"] for x in cases.read_text().splitlines()
               if x.strip() and json.loads(x)["id"] == "qwen3vl-1224-oom-kv-alloc-other-processes")
    record = read_log(log)
    content = log_report(record, _answer(record), redactor=Redactor())
    env = dict(map(tuple, content["environment"]))
    assert env["last phase begun"] == record.reached.replace("_", " ")
    listed = env["processes on the GPU (OOM message)"]
    assert listed.count("pid ") == sum(1 for p in record.gpu_processes if not p["this_process"])
    assert "this process: 14.90 GiB" in listed
    others = next(r for r in content["figures"] if r["figure"] == "other_processes_gib")
    assert others["printed"] == pytest.approx(record.numbers["other_processes_gib"])


KV_LOG = ("INFO 07-04 01:04:14 gpu_executor.py:84] # GPU blocks: 5970, # CPU blocks: 682\n"  # vllm#6124, verbatim
          "[rank0]: ValueError: The model's max seq len (131072) is larger than the maximum number of tokens that can "
          "be stored in KV cache (95520). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
          "initializing the engine.\n")


def test_the_readme_example_prints_no_replan_command_that_plan_refuses(tmp_path, capsys):  # newcomer-3 defect 5
    import shlex

    from diagnostics.cli import main

    (tmp_path / "vllm.log").write_text(KV_LOG)
    assert main(["explain", str(tmp_path / "vllm.log"), "--format", "md", "--model", "minicpm-v-2_6",
                 "--card", "3090"]) == 0
    md = capsys.readouterr().out
    assert "0.33.0" not in md  # the log is V0: never planned as the newest (V1) release
    commands = [line for line in md.splitlines() if line.startswith("python -m diagnostics plan")]
    for command in commands:  # whatever it offers must run
        assert main(shlex.split(command)[3:]) == 0, command


def test_a_v0_log_without_a_version_is_planned_with_a_v0_release():                          # newcomer-3 defect 5
    from diagnostics.explain.context import record_version
    from diagnostics.versions import default_engine

    record = read_log(KV_LOG)
    assert record.engine == "V0" and record.vllm_version is None
    assert default_engine(record_version(record)) == "V0"
