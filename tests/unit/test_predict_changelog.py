"""predict/changelog.py: release-by-release start-up changes with the vLLM rule that made them."""

from __future__ import annotations

import json

import pytest

from diagnostics.cli import main
from diagnostics.predict.accuracy import prediction_record
from diagnostics.predict.changelog import RULE_CHANGES, changelog, format_markdown, format_text, regression_cause
from diagnostics.predict.estimator import plan
from diagnostics.predict.fleet import expand_versions
from diagnostics.suite.baseline import compare, format_table
from diagnostics.versions import KNOWN_VERSIONS, parse_version

IMAGE_ONLY = {"limit_mm_per_prompt": {"image": 1, "video": 0}, "max_model_len": 8192}


def test_a_range_is_both_ends_and_every_known_release_between():
    assert expand_versions("0.20.0..0.34.0") == [v for v in KNOWN_VERSIONS if (0, 20) <= parse_version(v)[:2] <= (0, 34)]
    assert expand_versions("0.10.1.post1..0.10.2,0.6.3") == ["0.10.1", "0.10.2", "0.6.3"]


def test_the_0_20_step_names_util_and_the_graph_estimate_with_their_source():
    """4090, image only: 0.19 -> 0.20 moves KV (util 0.90 -> 0.92 and the graph estimate now subtracted)."""
    steps = changelog("minicpm-v-2_6", "4090", ["0.19.0", "0.20.0"], "llm", IMAGE_ONLY)
    step = steps[1]
    assert step.changes["kv_tokens"][0] > step.changes["kv_tokens"][1]
    assert step.changes["graph_budget"] == ("not budgeted", pytest.approx(steps[1].plan.components["cuda_graph"].value_gib, abs=0.01))
    assert step.settings_changed["gpu_memory_utilization"] == (0.9, 0.92)
    assert {r.source for r in step.rules} == {"config/cache.py:66", "envs.py:1724-1725"}


def test_0_34_step_lists_the_extensible_kv_cache_and_block_64():
    steps = changelog("minicpm-v-2_6", "h100-80", ["0.33.0", "0.34.0"])
    step = steps[1]
    assert step.settings_changed["block_size"] == (16, 64)
    assert step.settings_changed["gpu_memory_utilization"] == (0.92, 1.0)
    assert any("extensible KV cache" in r.what for r in step.rules)
    assert step.plan.kv_cache_tokens % 64 == 0


def test_every_change_across_all_releases_on_a_4090_has_a_recorded_rule():
    """No silent causes: wherever the plan of a default start moves between consecutive releases, the table names
    at least one rule crossed at that step (a new rule in the code without a row here fails this)."""
    for settings in ({}, IMAGE_ONLY):
        steps = changelog("minicpm-v-2_6", "4090", list(KNOWN_VERSIONS[KNOWN_VERSIONS.index("0.5.4"):]), "llm",
                          settings)
        unexplained = [(s.version, s.changes) for s in steps if s.changes and not s.rules]
        assert not unexplained, unexplained


def test_a_release_that_lacks_the_setting_is_a_row_saying_why_not_a_crash():
    steps = changelog("minicpm-v-2_6", "4090", ["0.10.1", "0.10.2"], "llm", {"kv_cache_memory_bytes": 4 << 30})
    assert steps[0].plan is None and "needs vLLM >= 0.10.2" in steps[0].refusal
    assert steps[1].plan is not None and steps[1].changes == {}


def test_a_setting_vllm_refuses_is_refused_per_release_like_plain_plan():
    steps = changelog("minicpm-v-2_6", "4090", ["0.33.0", "0.34.0"], "llm",
                      {"max_num_batched_tokens": 64, "max_num_seqs": 128})
    assert all(s.plan is None and "refuses these settings" in s.refusal for s in steps)


def test_rules_are_sorted_by_release_and_cite_a_source():
    assert list(RULE_CHANGES) == sorted(RULE_CHANGES, key=lambda r: r.since)
    assert all(r.source and ".py" in r.source for r in RULE_CHANGES)


def test_text_and_markdown_forms(capsys):
    steps = changelog("minicpm-v-2_6", "4090", ["0.33.0", "0.34.0"])
    text, md = format_text(steps, "t"), format_markdown(steps, "t")
    assert "0.34.0:" in text and "config/cache.py:185" in text
    assert md.startswith("### t") and "| 0.34.0 |" in md and "- **0.34.0**" in md


def test_cli_range_prints_the_changelog_and_json(capsys):
    assert main(["plan", "--card", "4090", "--vllm", "0.20.0..0.34.0"]) == 0
    out = capsys.readouterr().out
    assert "0.20.0" in out and "0.34.0:" in out and "extensible KV cache" in out
    assert main(["plan", "--card", "4090", "--vllm", "0.33.0,0.34.0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["vllm_version"] for r in doc["releases"]] == ["0.33.0", "0.34.0"]
    assert doc["releases"][1]["settings_changed"]["block_size"] == [16, 64]


@pytest.mark.parametrize("args, words", [
    (["--card", "cpu", "--vllm", "0.20.0..0.34.0"], "plan --card cpu"),
    (["--card", "4090", "--vllm", "0.34.0..0.20.0"], "runs backwards"),
    (["--card", "4090", "--vllm", "0.20.0..0.99.0"], "unsupported vLLM version"),
])
def test_cli_bad_ranges_are_one_line_usage_errors(capsys, args, words):
    assert main(["plan", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


# -- the upgrade gate names the cause -------------------------------------------------------------------------------


def _record(version: str, kv_tokens: int, peak: float, outcome: str = "ok", settings=IMAGE_ONLY) -> dict:
    return {"id": "image-only", "outcome": outcome, "kv_cache_tokens": kv_tokens, "peak_device_gib": peak,
            "prediction": prediction_record(plan("minicpm-v-2_6", "4090", version, "llm", settings))}


def test_a_kv_regression_across_0_20_names_the_graph_estimate_and_util_rules():
    cause = regression_cause(_record("0.19.0", 10000, 22.0), _record("0.20.0", 7000, 22.0))
    assert cause.startswith("KV tokens also in plan")
    assert "KV cache" in cause and "envs.py:1724-1725" in cause and "config/cache.py:66" in cause


def test_plan_expecting_no_change_says_so():
    cause = regression_cause(_record("0.21.0", 10000, 22.0), _record("0.22.0", 7000, 22.0))
    assert cause == "KV tokens: plan expected no change from vLLM 0.21.0 to 0.22.0"


def test_no_cause_within_one_version_or_without_predictions():
    assert regression_cause(_record("0.20.0", 10000, 22.0), _record("0.20.0", 7000, 22.0)) is None
    assert regression_cause({"kv_cache_tokens": 1}, {"kv_cache_tokens": 0}) is None


def test_compare_table_carries_the_planned_cause_for_a_regressed_row():
    table = format_table(compare([_record("0.19.0", 10000, 22.0)], [_record("0.20.0", 7000, 22.0)]))
    assert "REGRESSED" in table and "planned: KV tokens also in plan" in table


def test_cli_markdown_form_for_an_upgrade_pr(tmp_path):
    out = tmp_path / "upgrade.md"
    assert main(["plan", "--card", "h100-80", "--vllm", "0.33.0..0.34.0", "--format", "md", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("### openbmb/MiniCPM-V-2_6 on h100-80") and "| 0.34.0 | ok |" in text
    assert "- **0.34.0**" in text and "kv_tokens 846,880 -> 774,144" in text
