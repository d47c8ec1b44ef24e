"""Issue #9's report items: report.md fits one GitHub comment however many combinations failed."""

from __future__ import annotations

import json

from diagnostics.report import COMMENT_LIMIT, DETAILS_FILE, fit_comment, write_reports


def test_fit_comment_cuts_at_a_line_closes_what_is_open_and_links_the_rest():
    text = "# head\n\n<details>\n```\n" + "".join(f"line {i} " + "x" * 90 + "\n" for i in range(2000))
    cut = fit_comment(text, "full.md", limit=5000)
    assert len(cut) <= 5000
    assert cut.count("```") % 2 == 0 and cut.count("<details>") == cut.count("</details>")
    assert cut.rstrip().endswith("the whole report is in [full.md](full.md) next to this file.**")
    assert f"({len(text):,} characters)" in cut


def failing_record(i: int) -> dict:
    why = "max_num_seqs=256 makes the profile run push 256 dummy images through the vision encoder; " * 12
    return {"schema_version": 1, "run": "r", "id": f"mml{i}-seqs256", "model": "openbmb/MiniCPM-V-2_6",
            "settings": {"max_model_len": 1000 + i, "max_num_seqs": 256}, "outcome": "oom_profile",
            "phase": "vision_encoder", "status": "failed", "passed": False, "expected": "ok",
            "reasons": [f"expected ok (matrix), got oom_profile in the vision_encoder phase ({why})"],
            "peak_device_gib": 23.5, "peak_process_gib": 22.0, "startup_s": None,
            "card": {"name": "3090", "total_gib": 23.69, "profile_threshold_gib": 22.0, "headroom_gib": 1.0},
            "machine_info": {"card": "3090", "gpu_name": "NVIDIA GeForce RTX 3090", "vllm": "0.6.3"},
            "diagnosis": {"summary": why, "culprits": [{"setting": "max_num_seqs", "value": 256, "suggested": 64,
                                                         "why": why}], "error_line": "torch.OutOfMemoryError"}}


def test_report_md_stays_under_githubs_comment_limit_and_links_the_whole_report(tmp_path):
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(failing_record(i)) + "\n" for i in range(200)))
    written = write_reports(tmp_path, formats=("md",))
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert len(md) <= COMMENT_LIMIT
    assert f"[{DETAILS_FILE}]({DETAILS_FILE})" in md
    full = (tmp_path / DETAILS_FILE).read_text(encoding="utf-8")
    assert len(full) > COMMENT_LIMIT and "mml199-seqs256" in full
    assert tmp_path / DETAILS_FILE in written


def cpu_record(rid: str, outcome: str = "ok", status: str = "passed") -> dict:
    return {"schema_version": 1, "run": "r", "id": rid, "model": "kit:tiny-text", "settings": {"max_model_len": 256},
            "outcome": outcome, "phase": "unknown", "status": status, "passed": True,
            "expected": "ok" if outcome == "ok" else outcome, "reasons": [], "peak_device_gib": None,
            "peak_process_gib": 1.9, "startup_s": 20.0,
            "card": {"name": "cpu", "total_gib": 20.0, "profile_threshold_gib": 0.0, "headroom_gib": 0.0},
            "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "vllm": "0.32.0"},
            "diagnosis": {"summary": "", "culprits": [], "error_line": None}}


def test_charts_mark_expected_failures_and_label_cpu_runs_as_host_memory():
    from diagnostics.report.charts import figure_texts, overview_figure
    from diagnostics.report.content import build_report

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "results.jsonl").write_text(json.dumps(cpu_record("ok-256")) + "\n"
                                             + json.dumps(cpu_record("kv-too-small", "kv_too_small", "xfail")) + "\n")
        texts = figure_texts(overview_figure(build_report(tmp)))
    assert any(t.strip().startswith("kv_too_small (expected)") for t in texts), texts
    assert "peak host memory (GiB, RSS of the engine processes)" in texts
    assert "(expected): the matrix expects this failure" in texts


def test_report_html_is_one_file_with_the_charts_embedded(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps(cpu_record("ok-256")) + "\n")
    write_reports(tmp_path, formats=("html",))
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 2  # the overview and the one combination
    assert 'src="charts/' not in html
