from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest

from diagnostics.errors import UsageError
from diagnostics.suite.results import (
    RESULTS_FILE,
    ResultWriter,
    finished_ids,
    latest_run_dir,
    load_results,
    new_run_dir,
)


def test_each_append_is_one_complete_line_with_schema_and_run(tmp_path):
    run = tmp_path / "20261124-150102"
    w = ResultWriter(run)
    w.append({"id": "mml4096-seqs32-util1.0", "outcome": "ok", "peak_device_gib": 21.3})
    w.append({"id": "seed-3090", "outcome": "oom_profile", "log_file": run / "logs" / "seed-3090.log"})
    lines = (run / RESULTS_FILE).read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)
    assert first == {"schema_version": 1, "run": "20261124-150102", "id": "mml4096-seqs32-util1.0",
                     "outcome": "ok", "peak_device_gib": 21.3}
    assert second["log_file"].endswith("logs/seed-3090.log")


def test_append_rejects_a_record_without_id_and_unserialisable_values(tmp_path):
    w = ResultWriter(tmp_path)
    with pytest.raises(ValueError, match="id"):
        w.append({"outcome": "ok"})
    with pytest.raises(TypeError, match="object"):
        w.append({"id": "x", "thing": object()})
    with pytest.raises(ValueError):
        w.append({"id": "x", "peak": float("nan")})


def test_append_fsyncs_the_file(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    ResultWriter(tmp_path).append({"id": "a"})
    assert len(synced) == 1


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path):
    w = ResultWriter(tmp_path)
    w.append({"id": "a", "outcome": "ok"})
    w.append({"id": "b", "outcome": "kv_too_small"})
    with open(tmp_path / RESULTS_FILE, "a") as f:
        f.write('{"schema_version": 1, "id": "c", "outco')  # the sweep died mid-write
    with pytest.warns(UserWarning, match=r"results.jsonl:3: skipping a truncated last line"):
        records = load_results(tmp_path)
    assert [r["id"] for r in records] == ["a", "b"]
    with pytest.warns(UserWarning):
        assert finished_ids(tmp_path) == {"a", "b"}


def test_resuming_after_a_truncated_line_keeps_new_records_readable(tmp_path):
    w = ResultWriter(tmp_path)
    w.append({"id": "a"})
    with open(tmp_path / RESULTS_FILE, "a") as f:
        f.write('{"id": "b", "outc')
    w.append({"id": "b", "outcome": "ok"})
    with pytest.raises(UsageError, match=r"results.jsonl:2: not a result record"):
        load_results(tmp_path)  # the cut line is now in the middle: damage, not an interrupted write
    lines = (tmp_path / RESULTS_FILE).read_text().splitlines()
    assert json.loads(lines[-1])["id"] == "b"


def test_corrupt_line_in_the_middle_is_a_usage_error_naming_file_and_line(tmp_path):
    p = tmp_path / RESULTS_FILE
    p.write_text('{"id": "a"}\n[1, 2]\n{"id": "c"}\n')
    with pytest.raises(UsageError, match=r"results.jsonl:2: .*not a JSON object"):
        load_results(p)


def test_missing_file_means_no_results(tmp_path):
    assert load_results(tmp_path / "nope" / RESULTS_FILE) == []
    assert finished_ids(tmp_path) == set()


def test_new_run_dir_names_by_utc_timestamp_and_updates_latest(tmp_path):
    t = datetime(2026, 11, 24, 15, 1, 2, tzinfo=timezone.utc)
    first = new_run_dir(tmp_path / "reports", now=t)
    assert first.name == "20261124-150102" and first.is_dir()
    assert latest_run_dir(tmp_path / "reports") == first
    second = new_run_dir(tmp_path / "reports", now=t)  # same second: a distinct directory
    assert second.name == "20261124-150102-2"
    assert latest_run_dir(tmp_path / "reports") == second
    assert (tmp_path / "reports" / "latest").read_text().strip() == "20261124-150102-2"


def test_latest_is_none_without_runs_or_when_the_run_was_deleted(tmp_path):
    assert latest_run_dir(tmp_path) is None
    run = new_run_dir(tmp_path)
    run.rmdir()
    assert latest_run_dir(tmp_path) is None


def test_make_record_joins_the_start_the_verdict_and_the_measurement(tmp_path):
    from types import SimpleNamespace

    from diagnostics.cards import get_card
    from diagnostics.logs.record import LogRecord
    from diagnostics.suite.judge import Expectation, Limits, judge
    from diagnostics.suite.results import make_record

    result = SimpleNamespace(timed_out=False, returncode=0, signal=None, request={"ok": True}, startup_s=1.5,
                             wall_s=2.0, lock_wait_s=0.1, peak_device_gib=None, peak_process_gib=3.0,
                             phase_peaks_gib={"profile": 1.0}, torch_peak_gib=None, before_kv_peak_gib=1.0,
                             log_path=tmp_path / "logs" / "a.log", timeline_path=tmp_path / "timelines" / "a.csv",
                             device_peaks_gib={})
    log = LogRecord(outcome="ok", numbers={"kv_cache_tokens": 131072, "kv_cache_gib": 0.06})
    verdict = judge("a", get_card("cpu"), result, log, Expectation("ok", "matrix"), Limits(None, 2.0))
    start = {"id": "a", "scenario": "a", "model": "m", "model_path": "m", "load_format": "dummy", "settings": {},
             "card": {"name": "cpu"}, "machine_info": {}, "started_at": "2026-01-01T00:00:00Z"}
    record = make_record(start, verdict, result, log, tmp_path)
    assert list(record)[:8] == ["id", "scenario", "model", "model_path", "load_format", "settings", "card",
                                "machine_info"]
    assert list(record)[-2:] == ["started_at", "finished_at"] and record["started_at"] == "2026-01-01T00:00:00Z"
    assert (record["status"], record["passed"], record["reasons"]) == ("failed", False,
                                                                       ["overall peak 3.00 GiB > 2.00 GiB allowed on cpu"])
    assert record["limits_gib"] == {"profile_peak": None, "peak": 2.0} and record["profile_peak_gib"] == 1.0
    assert (record["kv_cache_tokens"], record["kv_cache_gib"], record["weights_gib"]) == (131072, 0.06, None)
    assert record["log_file"] == "logs/a.log" and record["timeline_file"] == "timelines/a.csv"
    assert record["device_peaks_gib"] == {} and record["device_peaks_sum_gib"] is None  # no claimed GPUs
    assert record["diagnosis"]["summary"] == verdict.failure_text() and record["diagnosis"]["culprits"] == []
