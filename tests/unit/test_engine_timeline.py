"""engine/timeline.py: vLLM's log stamps mapped onto the sample clock, phase peaks and the timeline CSV."""

from __future__ import annotations

import time as _time

import pytest

from diagnostics.engine.sampler import Sample
from diagnostics.engine.timeline import (
    phase_at,
    phase_boundaries,
    phase_peaks,
    phase_times,
    stamp_epoch,
    write_timeline_csv,
)


def local_epoch(text):
    return _time.mktime(_time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def test_stamp_epoch_picks_the_year_nearest_the_spawn():
    spawn = local_epoch("2027-01-01 00:00:02")
    assert stamp_epoch("12-31 23:59:59", spawn) == local_epoch("2026-12-31 23:59:59")
    assert stamp_epoch("01-01 00:00:05", spawn) == spawn + 3


def test_phase_times_map_stamps_to_seconds_since_spawn():
    spawn = local_epoch("2026-11-24 15:00:00") + 0.3
    stamps = {"weights_start": "11-24 15:00:05", "ready": "11-24 15:00:09", "not_a_marker": "11-24 15:00:07"}
    # the parent saw the first stamped line 0.9 s after spawn; its stamp (15:00:01) is consistent: no shift
    times = phase_times(stamps, spawn, first_stamp="11-24 15:00:01", first_seen_t_s=0.9)
    assert times == {"weights_start": pytest.approx(4.7), "ready": pytest.approx(8.7)}


def test_phase_times_realign_when_the_log_clock_disagrees():
    spawn = local_epoch("2026-11-24 15:00:00") + 0.3
    stamps = {"weights_start": "11-24 16:00:05"}  # child logged in another time zone (+1 h)
    times = phase_times(stamps, spawn, first_stamp="11-24 16:00:01", first_seen_t_s=0.9)
    # aligned on the first stamp: seen at 0.9 s, taken as mid-second -> 15:00:01 maps to 0.4 s
    assert times["weights_start"] == pytest.approx(4.4)


def test_phase_boundaries_order_ties_like_vllm_and_label_graph_capture():
    times = {"ready": 16.0, "kv_done": 16.0, "profile_done": 16.0, "weights_start": 15.0}
    b = phase_boundaries(times)
    assert b == [(0.0, "init"), (15.0, "weights"), (16.0, "kv_cache"), (16.0, "kv_cache"), (16.0, "ready")]
    assert [phase_at(t, b) for t in (0.0, 14.9, 15.0, 15.99, 16.0, 99.0)] == [
        "init", "init", "weights", "weights", "ready", "ready"]
    g = phase_boundaries({"weights_done": 5.0, "kv_done": 10.0, "graphs_done": 30.0, "ready": 31.0})
    assert [phase_at(t, g) for t in (6, 11, 30.5, 40)] == ["profile", "cuda_graph", "warmup", "ready"]


def test_phase_peaks_and_timeline_csv(tmp_path):
    samples = [Sample(0.0, 1 << 30, 5), Sample(1.0, 3 << 30, 9), Sample(2.0, 2 << 30, 7), Sample(3.0, 8 << 30, 1)]
    b = phase_boundaries({"weights_start": 0.5, "kv_done": 2.5})
    assert phase_peaks(samples, b, use_device=True) == {"init": 1 << 30, "weights": 3 << 30, "kv_cache": 8 << 30}
    assert phase_peaks(samples, b, use_device=False) == {"init": 5, "weights": 9, "kv_cache": 1}
    path = tmp_path / "t.csv"
    write_timeline_csv(path, samples, b)
    lines = path.read_text().splitlines()
    assert lines[0] == "t_s,device_used_gib,process_gib,phase"
    assert lines[2] == "1.000,3.0000,0.0000,weights" and lines[4].endswith(",kv_cache")
