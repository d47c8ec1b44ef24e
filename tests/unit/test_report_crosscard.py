"""`report RUN_DIR RUN_DIR ...`: runs from several machines in one cross-card report (report/crosscard.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.cli import main
from diagnostics.errors import UsageError
from diagnostics.report.crosscard import build_cross_card, render_cross_card_markdown

A10 = Path(__file__).resolve().parents[1] / "data" / "results" / "sweep-a10.jsonl"


def _run(tmp_path: Path, name: str, card: str, vllm: str, peak_scale: float, drop_last=False) -> Path:
    """A run directory for `card`: the a10 fixture's records with the card renamed and peaks scaled."""
    records = [json.loads(line) for line in A10.read_text().splitlines() if line.strip()]
    if drop_last:
        records = records[:-1]
    for r in records:
        r["card"]["name"], r["machine_info"]["card"], r["machine_info"]["vllm"] = card, card, vllm
        r["run"] = name
        if r.get("peak_device_gib") is not None:
            r["peak_device_gib"] = round(r["peak_device_gib"] * peak_scale, 2)
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def test_a_column_per_card_and_a_row_per_combination(tmp_path):
    a10 = _run(tmp_path, "run-a10", "a10", "0.6.3", 1.0)
    big = _run(tmp_path, "run-l40s", "l40s", "0.6.3", 1.1, drop_last=True)
    report = build_cross_card([a10, big])
    assert [c["label"] for c in report["columns"]] == ["a10", "l40s"]
    ids = [json.loads(line)["id"] for line in A10.read_text().splitlines() if line.strip()]
    assert [row["id"] for row in report["rows"]] == ids
    last = report["rows"][-1]["cells"]
    assert last["l40s"] is None and last["a10"]["outcome"]  # the l40s run did not start it
    first = report["rows"][0]["cells"]
    if first["a10"]["peak_gib"] is not None:
        assert first["l40s"]["peak_gib"] == pytest.approx(first["a10"]["peak_gib"] * 1.1, abs=0.02)
    md = render_cross_card_markdown(report)
    assert "| combination" in md and "| a10" in md and "| l40s" in md
    assert md.count(f"| {ids[-1]}") == 1 and " - " in md.split(ids[-1])[1].splitlines()[0]


def test_same_card_two_versions_are_two_columns(tmp_path):
    old = _run(tmp_path, "old", "a10", "0.6.3", 1.0)
    new = _run(tmp_path, "new", "a10", "0.32.0", 0.9)
    labels = [c["label"] for c in build_cross_card([old, new])["columns"]]
    assert labels == ["a10 (vLLM 0.6.3)", "a10 (vLLM 0.32.0)"]
    with pytest.raises(UsageError, match="same card and vLLM"):
        build_cross_card([old, old])
    with pytest.raises(UsageError, match="needs two or more run directories"):
        build_cross_card([old])


def test_cli_writes_markdown_json_and_one_chart(tmp_path, capsys):
    a10 = _run(tmp_path, "run-a10", "a10", "0.6.3", 1.0)
    l4 = _run(tmp_path, "run-l4", "l4", "0.6.3", 1.0)
    out = tmp_path / "merged"
    assert main(["report", str(a10), str(l4), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == ["cross-card.json", "cross-card.md", "cross-card.png"]
    assert (out / "cross-card.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "cross-card.json").read_text())["kind"] == "cross-card"
    assert main(["report", str(a10), str(l4), "--out", str(out), "--format", "html"]) == 2
    assert "accepted --format for several runs" in capsys.readouterr().err
    assert main(["report", str(a10), str(tmp_path / "missing")]) == 2


def test_records_whose_card_is_a_name_make_a_column_too(tmp_path):                          # newcomer-3 #360
    a, b = _run(tmp_path, "a", "3090", "0.6.3", 1.0), _run(tmp_path, "b", "4090", "0.6.3", 1.0)
    for run_dir, name in ((a, "3090"), (b, "4090")):
        records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
        for r in records:
            r["card"] = name  # what the single-run report also accepts
        (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = build_cross_card([a, b])
    assert [c["card"] for c in report["columns"]] == ["3090", "4090"]
