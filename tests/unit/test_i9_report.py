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
