"""diagnostics.logs.record: LogRecord's JSON shape."""

from __future__ import annotations

from pathlib import Path

from diagnostics.logs.reader import read_log
from diagnostics.logs.record import LogRecord

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


def log(name: str) -> LogRecord:
    return read_log((LOGS / name).read_text())


def test_to_json_shape():
    data = log("cpu_auto_ok.log").to_json()
    assert set(data) == {"outcome", "phase", "vllm_version", "engine", "platform", "settings", "numbers",
                         "error_line", "evidence", "timestamps", "reached", "gpu_processes", "engines",
                         "failed_engine"}
    assert data["reached"] == "ready" and data["gpu_processes"] == []
