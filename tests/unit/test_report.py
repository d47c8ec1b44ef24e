"""Reports: content of each format from the hand-made fixture run (tests/data/results/README.md)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.errors import UsageError
from diagnostics.redact import Redactor
from diagnostics.report import parse_formats, write_reports

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "results"
RESULTS = FIXTURE / "sweep-a10.jsonl"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    paths = write_reports(RESULTS, out_dir=out, redactor=Redactor())
    return out, paths


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_every_format_is_written(written):
    out, paths = written
    names = sorted(p.relative_to(out).as_posix() for p in paths)
    assert names == sorted([
        "report.md", "report.json", "report.html", "charts/overview.png",
        "charts/mml2048-seqs16-util0.9.png", "charts/mml4096-seqs32-util0.9.png",
        "charts/mml4096-seqs256-util0.9.png", "charts/mml8192-seqs32-util0.9.png",
    ])


def test_markdown_verdict_environment_table_and_failures(written):
    md = (written[0] / "report.md").read_text()
    assert "4 combinations of openbmb/MiniCPM-V-2_6 started with vLLM 0.6.3 on NVIDIA A10 (22.18 GiB): 2 came up, 2 did not." in md
    assert "Highest peak: 22.10 GiB (mml4096-seqs256-util0.9), above the card's threshold of 21.68 GiB." in md
    assert "48,320 tokens (mml2048-seqs16-util0.9)" in md
    # environment: GPU, driver, CUDA, versions, and only settings that differ from vLLM 0.6.3's defaults
    for row in ("| GPU ", "| NVIDIA A10 ", "| 550.54.15 ", "| 12.1 ", "| 2.4.0 ", "| 0.6.3 ", "| llm (vllm.LLM) "):
        assert row in md
    assert "trust_remote_code=true, dtype=bfloat16" in md  # as --set takes it
    assert "gpu_memory_utilization=" not in md.split("## Combinations")[0]  # 0.9 is the default
    assert "max_num_seqs ∈ {16, 32, 256}" in md
    # one GitHub table row per combination with its numbers
    assert "| mml8192-seqs32-util0.9  | kv_too_small ✗" in md
    row = next(line for line in md.splitlines() if line.startswith("| mml2048-seqs16-util0.9"))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "mml2048-seqs16-util0.9", "ok", "20.40", "19.95", "15.13", "1.21", "2.58", "48,320", "48.3"]
    assert "oom_profile (expected)" in md
    # failures: diagnosis, suggestion, folded log tail with the verbatim root-cause line
    assert md.count("<details><summary>") == 2
    assert "### `mml8192-seqs32-util0.9`: kv_too_small in kv_cache, failed the suite's checks" in md
    assert "Suggested settings: `max_num_seqs=32` (was 256)" in md
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.00 GiB." in md
    assert "/home/alice" not in md and "model='~/models/MiniCPM-V-2_6'" in md


def test_json_report_schema_and_numbers(written):
    doc = json.loads((written[0] / "report.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["counts"] == {"combinations": 4, "ok": 2, "failed": 2, "passed": 3, "failed_checks": 1}
    by_id = {c["id"]: c for c in doc["combinations"]}
    assert by_id["mml4096-seqs32-util0.9"]["kv_cache_tokens"] == 41920
    assert by_id["mml4096-seqs256-util0.9"]["chart"] == "charts/mml4096-seqs256-util0.9.png"
    assert doc["settings"]["non_default"] == {"trust_remote_code": True, "dtype": "bfloat16"}


def test_html_is_standalone_escaped_and_embeds_the_charts(written):
    html = (written[0] / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # issue #9: one file, the charts embedded as data URIs (the PNGs are still written next to it)
    assert html.count('<img src="data:image/png;base64,') == 5 and 'src="charts/' not in html  # overview + 4
    assert "<details><summary>Last 10 lines of logs/mml4096-seqs256-util0.9.log</summary><pre>" in html
    assert "model=&#x27;~/models/MiniCPM-V-2_6&#x27;" in html  # log text is escaped, not interpreted
    assert "<code>max_num_seqs=32</code>" in html


def test_pngs_fit_githubs_column(written):
    out = written[0]
    assert _png_size(out / "charts" / "mml4096-seqs32-util0.9.png") == (900, 400)
    width, height = _png_size(out / "charts" / "overview.png")
    assert width == 900 and 250 <= height <= 600


def test_formats_and_inputs_are_checked(tmp_path):
    assert parse_formats("all") == ("md", "json", "html", "png")
    assert parse_formats("md,json") == ("md", "json")
    with pytest.raises(UsageError, match="unknown report format 'pdf'; accepted: all, benchmark, html, json, md, png"):
        parse_formats("md,pdf")
    with pytest.raises(UsageError, match="no results file"):
        write_reports(tmp_path / "missing")
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(UsageError, match="no result records"):
        write_reports(tmp_path)


def test_report_command(tmp_path):
    run = [sys.executable, "-m", "diagnostics", "report", str(RESULTS), "--format", "md,json", "--out", str(tmp_path)]
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "report.md"), str(tmp_path / "report.json")]
    bad = subprocess.run(run[:5] + ["--format", "pdf"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown report format 'pdf'" in bad.stderr


# -- the environment block of `python -m diagnostics env` ------------------------------------------------


def test_a_sweep_with_many_long_failing_logs_still_fits_githubs_limit(tmp_path):
    """report.md goes through the same fit_to_limit as explain/plan --format md: log tails shrink first."""
    failing = json.loads(RESULTS.read_text().splitlines()[2])
    (tmp_path / "logs").mkdir()
    records = []
    for i in range(30):
        r = dict(failing, id=f"combo{i:03d}", log_file=f"logs/combo{i:03d}.log", timeline_file=None)
        (tmp_path / r["log_file"]).write_text("".join(f"ERROR {i} line {j} " + "y" * 200 + "\n" for j in range(40)))
        records.append(r)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    md, _full = write_reports(tmp_path, formats=("md",), out_dir=tmp_path / "out", redactor=Redactor())
    text = md.read_text(encoding="utf-8")
    assert len(text) <= 65_536
    assert "### `combo029`" in text  # every failure keeps its heading and diagnosis; only the folded logs shrink
    assert "(last 5 of 40; the rest left out to fit GitHub's limit)" in text  # 40, 20, 10 lines were too many
    assert "ERROR 29 line 39 " in text and "ERROR 29 line 34 " not in text
    full = (tmp_path / "out" / "report-full.md").read_text(encoding="utf-8")  # the rest, in the file it links
    assert "[report-full.md](report-full.md)" in text and "attach that file" in text
    assert "ERROR 29 line 0 " in full and "ERROR 0 line 34 " in full and "left out" not in full


def _many_failures(tmp_path, n: int, lines: int = 3) -> None:
    failing = json.loads(RESULTS.read_text().splitlines()[2])
    (tmp_path / "logs").mkdir()
    records = []
    for i in range(n):
        r = dict(failing, id=f"mml{i:04d}-seqs256-util0.9", log_file=f"logs/c{i:04d}.log", timeline_file=None)
        (tmp_path / r["log_file"]).write_text("".join(f"ERROR {i} line {j}\n" for j in range(lines)))
        records.append(r)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_however_many_combinations_failed_report_md_fits_and_links_the_whole_report(tmp_path):
    """700 failures: even a folded report is too long, so report.md gives one entry per distinct diagnosis and
    lists only what did not pass (at most 100 rows); report-full.md has every combination and every log line."""
    _many_failures(tmp_path, 700)
    paths = write_reports(tmp_path, formats=("md",), redactor=Redactor())
    assert sorted(p.name for p in paths) == ["report-full.md", "report.md"]
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    full = (tmp_path / "report-full.md").read_text(encoding="utf-8")
    assert len(text) <= 65_536 and "Cut at GitHub" not in text  # shortened by design, not cut mid-table
    assert "attach that file" in text and "one entry per distinct diagnosis" in text
    assert "### 700 combinations: oom" in text and "and 680 more" in text
    assert ("Showing 100 of the 700 combinations that did not come up or failed a check (of 700 combinations, 0 "
            "came up and passed every check)") in text
    assert "mml0099-seqs256" in text.split("## Failures")[0] and "mml0100-" not in text.split("## Failures")[0]
    assert all(f"### `mml{i:04d}-seqs256-util0.9`" in full for i in range(700))
    assert "ERROR 699 line 2" in full and len(full) > 65_536


def test_800_distinct_diagnoses_and_settings_still_fit_without_a_cut(tmp_path):
    """Every failure with its own max_model_len and its own diagnosis (a newcomer's case): grouping cannot merge
    them, so failures are counted by outcome, and the environment lists at most 12 values per varied setting."""
    _many_failures(tmp_path, 800)
    records = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    for i, r in enumerate(records):
        r["settings"] = dict(r["settings"], max_model_len=8192 + 16 * i)
        r["diagnosis"] = dict(r["diagnosis"], summary=f"Diagnosis {i}: max_model_len={8192 + 16 * i} is too long.")
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_reports(tmp_path, formats=("md",), redactor=Redactor())
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert len(text) <= 65_536 and "Cut at GitHub" not in text
    assert "failures counted by outcome" in text and "## Charts" in text and "| 800 " in text.replace("|  800", "| 800")
    assert "… (800 values)}" in text and max(len(line) for line in text.splitlines()) < 2_000
    full = (tmp_path / "report-full.md").read_text(encoding="utf-8")
    assert "Diagnosis 799: max_model_len=20976 is too long." in full and "(800 values)" not in full


def test_a_report_that_fits_again_removes_the_stale_full_report(tmp_path):
    _many_failures(tmp_path, 700)
    write_reports(tmp_path, formats=("md",), redactor=Redactor())
    assert (tmp_path / "report-full.md").exists()
    lines = (tmp_path / "results.jsonl").read_text().splitlines()[:2]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    write_reports(tmp_path, formats=("md",), redactor=Redactor())
    assert not (tmp_path / "report-full.md").exists()
    assert "report-full.md" not in (tmp_path / "report.md").read_text(encoding="utf-8")
# -- issue #9: report.md fits one GitHub comment; report.html is one file ------------------------------------------
def cpu_record(rid: str, outcome: str = "ok", status: str = "passed") -> dict:
    return {"schema_version": 1, "run": "r", "id": rid, "model": "kit:tiny-text", "settings": {"max_model_len": 256},
            "outcome": outcome, "phase": "unknown", "status": status, "passed": True,
            "expected": "ok" if outcome == "ok" else outcome, "reasons": [], "peak_device_gib": None,
            "peak_process_gib": 1.9, "startup_s": 20.0,
            "card": {"name": "cpu", "total_gib": 20.0, "profile_threshold_gib": 0.0, "headroom_gib": 0.0},
            "machine_info": {"card": "cpu", "gpu_name": "vLLM CPU backend", "vllm": "0.32.0"},
            "diagnosis": {"summary": "", "culprits": [], "error_line": None}}


def test_report_html_is_one_file_with_the_charts_embedded(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps(cpu_record("ok-256")) + "\n")
    write_reports(tmp_path, formats=("html",))
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 2  # the overview and the one combination
    assert 'src="charts/' not in html


def test_all_in_a_format_list_is_every_format_and_a_file_as_out_is_named_so(tmp_path, capsys):  # newcomer-3 #193, #197
    from diagnostics.cli import main
    from diagnostics.report import FORMATS, parse_formats

    assert parse_formats("all,md") == FORMATS
    (tmp_path / "afile").write_text("x")
    results = Path(__file__).resolve().parents[1] / "data" / "results" / "sweep-a10.jsonl"
    assert main(["report", str(results), "--format", "md", "--out", str(tmp_path / "afile")]) == 2
    assert "it exists and is not a directory" in capsys.readouterr().err


def test_report_html_says_what_report_md_says(tmp_path):                                     # newcomer-3 defect 9
    """The prediction line, the predicted-vs-measured table and a --search run's result are in report.html too,
    and a search probe that failed is the search's answer, not a failure."""
    from diagnostics.redact import Redactor
    from diagnostics.report.content import build_report
    from diagnostics.report.html import render_html

    run = tmp_path / "run"
    run.mkdir()
    records = [json.loads(line) for line in RESULTS.read_text().splitlines()]
    records[0]["plan_verdict_right"] = True
    records[0]["accuracy"] = [{"figure": "peak_gib", "predicted": 20.0, "actual": 20.4, "source": "nvml",
                               "error": -0.02}]
    probe = {**records[3], "id": "search-mml1024", "scenario": "search:max_model_len"}
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [records[0], probe]))
    (run / "search.json").write_text(json.dumps({
        "setting": "max_model_len", "lo": 256, "hi": 2048, "resolution": 16, "grid": 113, "max_starts": 8, "seed": None,
        "starts": 2, "probes": [{"value": 1024, "fits": False}, {"value": 896, "fits": True}], "limit": 896,
        "done": True, "contradictions": [], "predicted": 1024, "prediction_note": "plan --fit max_model_len: 1024",
        "card": "a10", "vllm": "0.6.3", "model": "m", "settings": {}, "ids": ["search-mml1024"]}))
    html = render_html(build_report(run, Redactor()), with_charts=False)
    assert "<strong>Prediction.</strong> plan&#x27;s verdict right for 1 of 1 starts." in html
    assert "<h2>Predicted vs measured</h2>" in html and "peak_gib" in html
    assert "Limit search: max_model_len on a10" in html and "Measured limit <strong>896</strong>" in html
    assert "<h2>Failures</h2>" not in html  # the failed probe is the search's answer
