"""report/markdown.py: the Markdown layout's helpers (the whole report is checked in test_report.py)."""

from __future__ import annotations

from diagnostics.report.markdown import fence_for


def test_fence_outgrows_backticks_in_the_log():
    assert fence_for(["plain"]) == "```"
    assert fence_for(["a ```` b", "`x`"]) == "`````"


# -- one look: the cells, labels and limit the sweep, log and plan reports share ----------------------------
from diagnostics.report.markdown import (GITHUB_LIMIT, LABELS, LOG_FIGURE_HEADERS, PLAN_FIGURE_HEADERS,
                                         TABLE_HEADERS, cell, culprit_lines, details, difference_cell,
                                         fit_to_limit, render_log_markdown, render_plan_markdown)


def test_cells_name_no_unit_and_keep_tiny_figures_readable():
    assert cell("weights_gib", 15.094) == "15.09"
    assert cell("kv_cache_gib", 0.0041) == "0.0041"
    assert cell("kv_cache_tokens", 72464) == "72,464"
    assert cell("startup_s", 41.26) == "41.3"
    assert cell("weights_gib", None) == "-"
    assert difference_cell("weights_gib", -0.01, -0.01 / 15.1) == "-0.01 (-0.1%)"
    assert difference_cell("kv_cache_tokens", 1234, 0.25) == "+1,234 (+25%)"
    assert difference_cell("weights_gib", 0.0, 0.0) == "±0.00 (+0.0%)"
    assert difference_cell("weights_gib", None, None) == "-"


def test_the_three_reports_share_labels():
    for key in ("weights_gib", "activation_peak_gib", "kv_cache_gib", "kv_cache_tokens"):
        assert LABELS[key] in TABLE_HEADERS  # the sweep's columns are the single reports' row names
    assert LOG_FIGURE_HEADERS[2:4] == PLAN_FIGURE_HEADERS[1:3] == ["plan predicts", "plan range"]


def test_culprit_lines_say_unset_and_leave_out_a_target_the_figures_cannot_size():
    lines = culprit_lines([{"setting": "kv_cache_memory_bytes", "value": None, "suggested": 268435456, "why": "x."},
                           {"setting": "max_num_seqs", "value": 256, "suggested": None, "why": ""}])
    assert lines == ["`kv_cache_memory_bytes=268435456` (was unset): x", "`max_num_seqs` (now 256)"]


def test_details_keeps_the_last_lines_and_says_what_it_left_out():
    block = "\n".join(details("Decisive log lines", [f"line {i}" for i in range(10)], keep=3))
    assert "(last 3 of 10; the rest left out to fit GitHub's limit)" in block
    assert "line 9" in block and "line 6" not in block
    assert "10 lines left out" in details("x", ["a"] * 10, keep=0)[0]
    long = details("x", ["y" * 5000])[3]
    assert len(long) < 2100 and long.endswith("(3,000 characters cut)")


def _log_content(evidence: list[str]) -> dict:
    return {"title": "t", "verdict": "v", "figures": [], "prediction_gap": None, "notes": [],
            "environment": [["vLLM", "0.6.3"]], "summary": "s", "culprits": [], "fix": {}, "replan_command": None,
            "error_line": "boom | `x`", "evidence": evidence}


def test_fit_to_limit_folds_fewer_lines_until_the_report_fits():
    content = _log_content([f"{i:06d} " + "z" * 300 for i in range(1000)])  # ~300 kB of decisive lines
    assert len(render_log_markdown(content)) > GITHUB_LIMIT
    text = fit_to_limit(lambda keep: render_log_markdown(content, keep))
    assert len(text) <= GITHUB_LIMIT
    assert "000999 " in text and "000000 " not in text  # the last lines stay, the first go
    assert "the rest left out to fit GitHub's limit" in text and text.endswith("</sub>\n")
    small = _log_content(["a", "b"])
    assert fit_to_limit(lambda keep: render_log_markdown(small, keep)) == render_log_markdown(small)
    cut = fit_to_limit(lambda keep: "x" * 70000)  # nothing left to fold: cut with a note
    assert len(cut) <= GITHUB_LIMIT and cut.rstrip().endswith("limit.</sub>")


def test_plan_layout_shows_fit_rows_when_a_search_gave_them():
    content = {"title": "t", "verdict": "v", "outcome": "ok", "figures": [], "notes": [], "culprits": [],
               "environment": [["model", "m"]], "summary": "", "fix": {}, "replan_command": None,
               "fits": [{"settings": {"max_model_len": 4096}, "verdict": "ok", "peak_gib": 20.5,
                         "kv_cache_tokens": 51888}]}
    text = render_plan_markdown(content)
    assert "## What fits" in text and "| max_model_len=4096 | ok" in text and "51,888" in text
    assert "## What fits" not in render_plan_markdown({**content, "fits": None})


def test_report_md_says_how_often_plan_was_right_and_lists_predicted_vs_actual(tmp_path):
    import json

    from diagnostics.redact import Redactor
    from diagnostics.report.content import build_report
    from diagnostics.report.markdown import render_markdown

    base = {"schema_version": 1, "run": "r", "model": "kit:tiny-text", "settings": {}, "card": {"name": "cpu"},
            "machine_info": {"vllm": "0.32.0"}, "peak_process_gib": 2.0}
    records = [
        {**base, "id": "a", "outcome": "ok", "plan_verdict_right": True, "prediction": {"verdict": "ok"},
         "accuracy": [{"figure": "kv_cache_tokens", "predicted": 65536, "actual": 65536, "source": "vllm",
                       "error": 0.0}]},
        {**base, "id": "b", "outcome": "kv_too_small", "plan_verdict_right": False, "prediction": {"verdict": "ok"},
         "accuracy": [{"figure": "weights_gib", "predicted": 0.5, "actual": 0.4, "source": "vllm", "error": 0.25}]},
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = build_report(tmp_path, Redactor())
    assert report["plan_accuracy"]["line"] == "plan's verdict right for 1 of 2 starts"
    text = render_markdown(report)
    assert "**Prediction.** plan's verdict right for 1 of 2 starts." in text
    table = text[text.index("## Predicted vs measured"):]
    assert "| a " in table and "65,536" in table and "+25.0%" in table


def test_culprit_values_are_written_as_set_takes_them():
    """`--format md` printed `{image: 999, video: 0}` and `False`, which `--set` refuses (a newcomer's find, #9)."""
    from diagnostics.report.markdown import culprit_lines

    [line] = culprit_lines([{"setting": "limit_mm_per_prompt", "value": {"image": 999, "video": 999},
                             "suggested": {"image": 999, "video": 0}, "why": "fewer dummy videos"}])
    assert line.startswith('`limit_mm_per_prompt={"image": 999, "video": 0}` (was {"image": 999, "video": 999})')
    [eager] = culprit_lines([{"setting": "enforce_eager", "value": False, "suggested": True, "why": ""}])
    assert eager == "`enforce_eager=true` (was false)"
