"""report/content.py: the redacted report data (log tails, non-default settings, vLLM's defaults, the verdict)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from diagnostics.redact import Redactor
from diagnostics.report import write_reports
from diagnostics.report.content import build_report, non_default_settings, resolved_defaults

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "results"
RESULTS = FIXTURE / "sweep-a10.jsonl"


def test_log_tail_is_the_last_40_lines(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "run")
    run = tmp_path / "run"
    (run / "logs" / "mml8192-seqs32-util0.9.log").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    report = build_report(run / "sweep-a10.jsonl", Redactor())
    tail = next(c for c in report["combinations"] if c["id"] == "mml8192-seqs32-util0.9")["log_tail"]
    assert tail[0] == "line 61" and tail[-1] == "line 100" and len(tail) == 40
    assert next(c for c in report["combinations"] if c["outcome"] == "ok")["log_tail"] is None


def test_non_default_settings_split_common_and_varied():
    records = [{"settings": {"max_num_seqs": 32, "gpu_memory_utilization": 0.9, "enforce_eager": True}},
               {"settings": {"max_num_seqs": 64, "gpu_memory_utilization": 0.9, "enforce_eager": True}}]
    common, varied = non_default_settings(records, "0.6.3")
    assert common == {"enforce_eager": True}
    assert varied == {"max_num_seqs": [32, 64]}
    common, _ = non_default_settings(records, "0.20.0")  # the default became 0.92
    assert common == {"gpu_memory_utilization": 0.9, "enforce_eager": True}


def test_defaults_come_from_settings_resolve_when_it_knows_the_model():
    old = resolved_defaults({"model": "openbmb/MiniCPM-V-2_6", "card": {"name": "a10"}, "machine_info": {"vllm": "0.6.3"}})
    new = resolved_defaults({"model": "openbmb/MiniCPM-V-2_6", "card": {"name": "a10"}, "machine_info": {"vllm": "0.32.0"}})
    assert old["gpu_memory_utilization"] == 0.9 and new["gpu_memory_utilization"] == 0.92
    assert old["trust_remote_code"] is False  # vLLM's own default, not the suite's
    records = [{"settings": {"gpu_memory_utilization": 0.92, "max_num_seqs": 256}}]
    assert non_default_settings(records, "0.32.0", new)[0] == {}
    assert non_default_settings(records, "0.6.3", old)[0] == {"gpu_memory_utilization": 0.92}
    assert resolved_defaults({"model": "/nowhere/model", "card": {"name": "a10"}, "machine_info": {}}) is None


def test_verdict_says_when_weights_were_dummy(tmp_path):
    records = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    md_real = (write_reports(RESULTS, formats=("md",), out_dir=tmp_path / "real", redactor=Redactor())[0]).read_text()
    assert "Weights were dummy" not in md_real
    dummy = tmp_path / "dummy.jsonl"
    dummy.write_text("".join(json.dumps({**r, "load_format": "dummy"}) + "\n" for r in records))
    md_dummy = (write_reports(dummy, formats=("md",), out_dir=tmp_path / "dummy", redactor=Redactor())[0]).read_text()
    assert "Weights were dummy (load_format=dummy)" in md_dummy.split("## Environment")[0]
