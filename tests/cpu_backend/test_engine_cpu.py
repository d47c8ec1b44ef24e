"""Real vLLM engine starts on the CPU backend through run_start (about 20 s each; run serially).

The signal and timeout tests come first on purpose: every start after them (ok and failing alike) shows that
a killed or hung start leaves the sweep intact (no processes left, the engine lock released).
"""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from diagnostics.engine.launch import group_members, run_start
from diagnostics.suite.judge import outcome_of
from diagnostics.explain import explain_record
from diagnostics.logs.reader import read_log
from diagnostics.outcomes import OUTCOMES

pytestmark = pytest.mark.cpu_engine

PHASES_ON_TIMELINE = {"init", "weights", "profile", "kv_cache", "cuda_graph", "warmup", "ready"}


@pytest.fixture
def start(request):
    """run_start, with the start's own wall time and its wait for the engine lock in the test report's user_properties."""

    def run(spec):
        result = run_start(spec)
        request.node.user_properties.append(("engine_wall_s", result.wall_s))
        request.node.user_properties.append(("engine_lock_wait_s", result.lock_wait_s))
        return result

    return run


def record_of(result):
    """The LogRecord the launcher read (once) from the start's log; it is what reading the log again gives."""
    assert result.log == read_log(Path(result.log_path).read_text(encoding="utf-8", errors="replace"))
    return result.log


def assert_group_gone(result, pid):
    assert group_members(pid) == [], f"processes of the start survived: {group_members(pid)}"
    assert result.leftover_pids_killed == []


def test_start_killed_by_a_signal_is_recorded_as_a_crash(start, cpu_start, tiny_text_model):
    spawned = []
    spec = cpu_start(tiny_text_model, "killed", on_spawn=spawned.append)
    box = {}
    runner = threading.Thread(target=lambda: box.update(result=start(spec)))
    runner.start()
    deadline = time.monotonic() + 600  # includes waiting for the engine lock other starts may hold
    while time.monotonic() < deadline and runner.is_alive():
        if spawned and "Starting to load model" in spec.log_path.read_text(errors="replace"):
            os.killpg(spawned[0], signal.SIGKILL)
            break
        time.sleep(0.1)
    runner.join()
    result = box["result"]
    assert (result.returncode, result.signal, result.timed_out) == (-9, "SIGKILL", False)
    assert result.startup_s is None and result.request is None
    assert outcome_of(result, record_of(result).outcome) == "crash"
    assert "weights_start" in result.phase_times_s  # it was loading when it died
    assert_group_gone(result, spawned[0])


def test_start_hanging_past_its_timeout_is_killed_and_recorded(start, cpu_start, tiny_text_model):
    spawned = []
    spec = cpu_start(tiny_text_model, "hang", timeout_s=8, grace_s=5, on_spawn=spawned.append)
    result = start(spec)
    assert result.timed_out is True
    assert result.signal in ("SIGTERM", "SIGKILL")
    assert 8 <= result.wall_s < 8 + 5 + 10
    assert result.startup_s is None
    assert outcome_of(result, record_of(result).outcome) == "timeout"
    assert_group_gone(result, spawned[0])


def test_tiny_text_model_starts_and_answers(start, cpu_start, tiny_text_model, tmp_path, monkeypatch):
    spawned = []
    spec = cpu_start(tiny_text_model, "text-ok", on_spawn=spawned.append)
    # A caller's relative paths (model dir, log, timeline) keep their meaning from the caller's directory.
    monkeypatch.chdir(tmp_path)
    spec.model = os.path.relpath(tiny_text_model, tmp_path)
    spec.log_path, spec.timeline_path = Path("logs/text-ok.log"), Path("timelines/text-ok.csv")
    result = start(spec)
    assert result.log_path == tmp_path / "logs" / "text-ok.log" and result.log_path.exists()
    record = record_of(result)
    assert result.returncode == 0 and result.signal is None and not result.timed_out
    assert record.outcome == "ok" and outcome_of(result, record.outcome) == "ok"
    assert record.platform == "cpu" and record.numbers["kv_cache_tokens"] > 0
    assert result.request["ok"] is True and result.request["image"] is False
    assert len(result.request["output_ids"]) == 8 and result.request["prompt_tokens"] > 5
    assert result.peak_process_gib > 0.3 and result.peak_device_gib is None
    assert 0 < result.startup_s < result.wall_s
    assert result.child["torch"] == {"cuda_available": False}
    # phases: marked from the log, peaks per phase never above the overall peak
    assert {"weights_start", "ready"} <= set(result.phase_times_s)
    assert result.phase_times_s["weights_start"] <= result.phase_times_s["ready"] <= result.startup_s + 1
    assert {"init", "ready"} <= set(result.phase_peaks_gib) <= PHASES_ON_TIMELINE
    assert max(result.phase_peaks_gib.values()) == pytest.approx(result.peak_process_gib, abs=1e-3)
    assert result.before_kv_peak_gib <= result.peak_process_gib
    rows = list(csv.DictReader(open(result.timeline_path)))
    assert list(rows[0]) == ["t_s", "device_used_gib", "process_gib", "phase"]
    assert len(rows) > 20 and all(r["device_used_gib"] == "" for r in rows)
    assert max(float(r["process_gib"]) for r in rows) == pytest.approx(result.peak_process_gib, abs=1e-3)
    assert [float(r["t_s"]) for r in rows] == sorted(float(r["t_s"]) for r in rows)
    assert_group_gone(result, spawned[0])


def test_tiny_minicpmv26_answers_one_request_with_an_image(start, cpu_start, tiny_minicpmv26):
    result = start(cpu_start(tiny_minicpmv26, "minicpmv26-image", max_model_len=4096, trust_remote_code=True,
                                 limit_mm_per_prompt={"image": 1, "video": 0}, image_size=(64, 64)))
    record = record_of(result)
    assert result.returncode == 0, record.error_line
    assert record.outcome == "ok"
    assert result.request["ok"] is True and result.request["image"] is True
    assert result.request["prompt_tokens"] > 64  # 64 resampler queries for the one slice, plus the text
    assert len(result.request["output_ids"]) == 8
    assert result.peak_process_gib > 0.3


def test_kv_too_small_for_max_model_len(start, cpu_start, tiny_text_model):
    # tiny Qwen2 in float32: 2 layers x (K+V) x 2 kv heads x 32 x 4 B = 1 KiB per token -> 1 MiB holds 1024
    result = start(cpu_start(tiny_text_model, "kv-too-small", request=False, max_model_len=4096,
                                 kv_cache_memory_bytes=1 << 20))
    record = record_of(result)
    assert result.returncode == 1 and result.signal is None
    assert record.outcome == "kv_too_small" and outcome_of(result, record.outcome) == "kv_too_small"
    estimated = record.numbers["estimated_max_model_len"]
    assert 0 < estimated <= 1024 < 4096
    culprits = {c.setting for c in explain_record(record).culprits}
    assert culprits & {"max_model_len", "kv_cache_memory_bytes"}


def test_kv_below_one_block(start, cpu_start, tiny_text_model):
    result = start(cpu_start(tiny_text_model, "kv-below-block", request=False, kv_cache_memory_bytes=65536))
    record = record_of(result)
    assert result.returncode == 1
    assert record.outcome == "no_kv_cache"
    assert "No available memory for the cache blocks" in record.error_line
    explanation = explain_record(record)
    assert explanation.outcome == "no_kv_cache" and explanation.summary


def test_utilization_above_what_the_host_has_free(start, cpu_start, tiny_text_model):
    result = start(cpu_start(tiny_text_model, "util-too-high", request=False, kv_cache_memory_bytes=None,
                                 gpu_memory_utilization=0.99))
    record = record_of(result)
    assert result.returncode == 1
    assert record.outcome == "insufficient_free_memory"
    assert "on node 0" in record.error_line
    assert "gpu_memory_utilization" in {c.setting for c in explain_record(record).culprits}
    assert set(OUTCOMES) >= {record.outcome}
