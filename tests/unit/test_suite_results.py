from __future__ import annotations

import json
import os
import re
from datetime import datetime, UTC

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
    with pytest.warns(UserWarning, match=r"results.jsonl:3: truncated last line skipped"):
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
    t = datetime(2026, 11, 24, 15, 1, 2, tzinfo=UTC)
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
                             baseline_device_gib=None, device_after_gib=None, devices=[], child={},
                             sampler={"kind": "rss", "readings": 40, "interval_s": 0.05, "error": None},
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


def test_make_record_puts_plans_prediction_beside_what_vllm_printed(tmp_path):
    from types import SimpleNamespace

    from diagnostics.cards import get_card
    from diagnostics.logs.record import LogRecord
    from diagnostics.suite.judge import Expectation, Limits, judge, predict_start
    from diagnostics.suite.results import make_record

    settings = {"max_model_len": 4096, "max_num_seqs": 32, "gpu_memory_utilization": 1.0}
    plan = predict_start("minicpm-v-2_6", get_card("3090"), "0.6.3", settings)
    result = SimpleNamespace(timed_out=False, returncode=0, signal=None, request=None, startup_s=40.0, wall_s=45.0,
                             lock_wait_s=0.0, peak_device_gib=22.0, peak_process_gib=21.5, phase_peaks_gib={},
                             torch_peak_gib=None, before_kv_peak_gib=None,
                             log_path=tmp_path / "a.log", timeline_path=tmp_path / "a.csv",
                             baseline_device_gib=None, device_after_gib=None, devices=[], child={},
                             sampler={"kind": "nvml", "readings": 4500, "readings_per_s": 100.0,
                                      "interval_s": 0.01, "error": None})
    log = LogRecord(outcome="ok", numbers={"weights_gib": 15.5, "kv_cache_tokens": 50000})
    verdict = judge("a", get_card("3090"), result, log, Expectation("ok", "matrix"), Limits(None, None))
    start = {"id": "a", "settings": settings, "started_at": "2026-01-01T00:00:00Z"}
    record = make_record(start, verdict, result, log, tmp_path, plan)
    assert record["prediction"]["verdict"] == plan.verdict and record["plan_verdict_right"] is (plan.verdict == "ok")
    assert record["prediction"]["kv_cache_tokens"] == plan.kv_cache_tokens
    by = {c["figure"]: c for c in record["accuracy"]}
    assert by["weights_gib"]["actual"] == 15.5 and by["weights_gib"]["source"] == "vllm"
    expected = (plan.components["weights"].value_gib - 15.5) / 15.5
    assert abs(by["weights_gib"]["error"] - expected) < 1e-3
    assert by["peak_gib"]["source"] == "measured" and by["peak_gib"]["actual"] == 22.0
    none = make_record(start, verdict, result, log, tmp_path, None)
    assert (none["prediction"], none["accuracy"], none["plan_verdict_right"]) == (None, [], None)


def test_the_record_carries_baseline_sampler_and_the_engine_that_ran(tmp_path):         # review F3, F4; compat 6, 7
    from types import SimpleNamespace

    from diagnostics.cards import get_card
    from diagnostics.logs.record import LogRecord
    from diagnostics.suite.judge import Expectation, Limits, judge
    from diagnostics.suite.results import kv_tokens, make_record

    sampler = {"kind": "nvml", "readings": 2900, "readings_per_s": 96.7, "interval_s": 0.01, "error": None}
    devices = [{"memory_info": "v2", "reserved_gib": 0.3, "baseline_gib": 1.2, "peak_gib": 22.5, "after_gib": 1.2}]
    result = SimpleNamespace(timed_out=False, returncode=0, signal=None, request={"ok": True}, startup_s=20.0,
                             wall_s=30.0, lock_wait_s=0.0, peak_device_gib=22.5, peak_process_gib=None,
                             phase_peaks_gib={}, torch_peak_gib=None, before_kv_peak_gib=15.0,
                             log_path=tmp_path / "a.log", timeline_path=tmp_path / "a.csv", baseline_device_gib=1.2,
                             device_after_gib=1.2, devices=devices, child={"engine": "V0"}, sampler=sampler)
    log = LogRecord(outcome="ok", engine="V0", numbers={"gpu_blocks": 2000})
    card = get_card("3090")
    verdict = judge("a", card, result, log, Expectation("ok", "matrix"), Limits(23.19, 0.9 * 23.69 + 1.0))
    start = {"id": "a", "scenario": "a", "model": "m", "model_path": "m", "load_format": "auto",
             "settings": {"use_v1": True, "block_size": 32}, "card": {"name": "3090"}, "machine_info": {},
             "started_at": "2026-01-01T00:00:00Z"}
    record = make_record(start, verdict, result, log, tmp_path)
    assert record["status"] == "passed" and record["baseline_device_gib"] == 1.2  # 21.3 GiB of its own
    assert record["sampler"] == sampler and record["devices"] == devices
    assert (record["engine"], record["use_v1"]) == ("V0", False)  # asked for V1 (0.5/0.6 ignore it): V0 ran
    assert record["kv_cache_tokens"] == 2000 * 32  # V0: blocks x block_size
    assert kv_tokens({"kv_cache_tokens": 5, "gpu_blocks": 9}, {}) == 5 and kv_tokens({"gpu_blocks": 9}, {}) == 144


def test_spread_and_with_repeats():                                                       # issue 25
    from diagnostics.suite.results import own_peak_gib, spread, with_repeats

    assert spread([2.0, None, 1.0, 4.0]) == {"min": 1.0, "median": 2.0, "max": 4.0, "n": 3, "relative": 1.5}
    assert spread([1.0, 3.0])["median"] == 2.0 and spread([]) is None and spread([True]) is None
    assert own_peak_gib({"peak_device_gib": 20.0, "baseline_device_gib": 0.5}) == 19.5
    assert own_peak_gib({"peak_device_gib": None, "peak_process_gib": 2.1}) == 2.1
    starts = [{"id": "a", "outcome": "ok", "status": "passed", "peak_process_gib": p, "kv_cache_tokens": 100,
               "startup_s": s, "log_file": f"logs/a{i}.log"} for i, (p, s) in enumerate([(2.0, 10.0), (2.2, 12.0)])]
    failed = {**starts[0], "outcome": "oom_request", "status": "failed", "peak_process_gib": 9.0}
    record = with_repeats(starts[1], starts + [failed])
    assert record["id"] == "a" and record["repeat"]["n"] == 3 and len(record["repeat"]["starts"]) == 3
    peak = record["repeat"]["figures"]["peak"]
    assert (peak["min"], peak["max"], peak["n"]) == (2.0, 2.2, 2)  # only starts with the chosen outcome
    assert record["repeat"]["starts"][2]["outcome"] == "oom_request"


def test_file_stem_never_leaves_its_directory_and_never_joins_two_ids():                  # newcomer-3 defect 6
    from diagnostics.suite.results import file_stem

    assert file_stem("mml2048-seqs16-util0.9") == "mml2048-seqs16-util0.9"  # a plain id keeps its name
    stems = {i: file_stem(i) for i in ("../../../escaped", "a/b", "a_b", "..", ".", "x" * 300, "ログ", "")}
    for rid, stem in stems.items():
        assert "/" not in stem and not stem.startswith(".") and 0 < len(stem) <= 100, rid
    assert len(set(stems.values())) == len(stems)


@pytest.mark.parametrize("field, value, words", [
    ("peak_device_gib", float("nan"), "peak_device_gib is nan; expected a finite number"),
    ("startup_s", float("inf"), "startup_s is inf"),
    ("settings", "max_model_len=4096", "settings is 'max_model_len=4096'; expected a JSON object"),
    ("card", 3090, "card is 3090; expected a JSON object or text"),
    ("diagnosis", {"culprits": ["x"]}, "diagnosis.culprits is ['x']; expected a list of JSON objects"),
    ("phase_peaks_gib", {"profile": "big"}, "phase_peaks_gib.profile is 'big'"),
])
def test_a_damaged_record_is_one_line_naming_file_line_and_field(tmp_path, field, value, words):  # newcomer-3 #171
    import json as _json
    from diagnostics.suite.results import load_results

    path = tmp_path / "results.jsonl"
    path.write_text(_json.dumps({"id": "a", "outcome": "ok", field: value}) + "\n")
    with pytest.raises(UsageError) as err:
        load_results(path)
    assert str(err.value).startswith(f"{path}:1: ") and words in str(err.value)


@pytest.mark.parametrize("extra, words", [                                                  # newcomer-3 #173, #180, #184
    ({"schema_version": 999}, "schema_version 999; this vllm-memcheck reads schema_version 1"),
    ({"outcome": "exploded"}, "outcome 'exploded' is none of ok, "),
    ({"peak_device_gib": -3.0}, "peak_device_gib is -3.0; expected a figure >= 0"),
])
def test_a_record_from_elsewhere_is_refused_in_one_line(tmp_path, extra, words):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"id": "a", "outcome": "ok", **extra}) + "\n")
    with pytest.raises(UsageError, match=re.escape(words)):
        load_results(path)


def test_a_results_file_of_zeros_is_refused_before_it_is_read_whole(tmp_path):               # newcomer-3 #206, #361
    path = tmp_path / "results.jsonl"
    with open(path, "wb") as f:
        f.truncate(2 << 30)  # a sparse 2 GiB of NULs: reading it whole took 4-6 GB
    with pytest.raises(UsageError, match="starts with zero bytes, not JSON lines"):
        load_results(path)
